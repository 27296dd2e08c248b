package archive

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/message"
)

// Status lines are added to the mbox file, and OpenMessage and Check see
// the server's bytes without them, in CRLF and LF archives, for messages
// with any line endings, and through an alias record.
func TestStatusHeaders(t *testing.T) {
	msgs := []struct {
		raw   string
		flags []string
		want  string // the lines added, with LF
	}{
		{"From: a@b\r\nSubject: seen\r\n\r\nFrom body\r\n", []string{`\Seen`, `\Answered`, "$Label1", "Work"}, "Status: RO\nX-Status: A\nX-Keywords: $Label1 Work\n"},
		{"Subject: unseen\r\n\r\nbody", []string{`\Flagged`, `\Deleted`, `\Draft`}, "Status: O\nX-Status: FTD\n"},
		{"Subject: nothing\r\n\r\n", nil, "Status: O\n"},
		{"Subject: lf only\n\nbody\n", []string{`\Seen`}, "Status: RO\n"},
		{"Subject: header only\r\n", []string{`\Seen`}, "Status: RO\n"},
		{"\r\nbody without header\r\n", nil, "Status: O\n"},
		{"Subject: no end", nil, ""},
	}
	for _, lf := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "a")
		a, err := Open(dir, Mbox, lf, "test")
		if err != nil {
			t.Fatal(err)
		}
		a.StatusHeaders = true
		w, err := a.OpenFolder("INBOX", []string{"INBOX"})
		if err != nil {
			t.Fatal(err)
		}
		var first Record
		for i, m := range msgs {
			meta := &message.Meta{UIDValidity: 1, UID: uint32(i + 1), Flags: m.flags, InternalDate: time.Unix(1700000000, 0)}
			if _, err := w.Put(meta, strings.NewReader(m.raw), nil); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = w.Pending()[0]
			}
		}
		// an alias of the first message
		alias := &message.Meta{UIDValidity: 1, UID: 99, Flags: nil}
		if _, err := w.Put(alias, strings.NewReader(msgs[0].raw), func(*message.Meta, Record) (*Record, error) { return &first, nil }); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		file, _ := os.ReadFile(filepath.Join(dir, "INBOX.mbox"))
		text := strings.ReplaceAll(string(file), "\r\n", "\n")
		for _, m := range msgs {
			if m.want != "" && !strings.Contains(text, m.want) {
				t.Errorf("lf=%v: %q not in the file:\n%s", lf, m.want, text)
			}
		}
		if lf && strings.Count(string(file), "\r\n") != 0 {
			t.Errorf("CRLF in an LF archive: %q", file)
		}
		recs, err := a.Records("INBOX")
		if err != nil || len(recs) != len(msgs)+1 {
			t.Fatalf("%d records, %v", len(recs), err)
		}
		for i, r := range recs {
			want := msgs[0].raw
			if i < len(msgs) {
				want = msgs[i].raw
				if (r.StatusLen > 0) != (msgs[i].want != "") {
					t.Errorf("lf=%v: message %d: status_len %d", lf, i, r.StatusLen)
				}
			}
			rc, err := a.OpenMessage(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, []byte(want)) {
				t.Errorf("lf=%v: message %d came back as %q, want %q (%v)", lf, i, got, want, err)
			}
			if int64(len(want)) != r.Size {
				t.Errorf("lf=%v: message %d: size %d in the index, %d on the server", lf, i, r.Size, len(want))
			}
		}
		res, err := a.Check()
		if err != nil || len(res.Problems) != 0 || res.Messages != len(msgs) {
			t.Errorf("lf=%v: check: %+v %v", lf, res, err)
		}
		a.Close()
	}
}
