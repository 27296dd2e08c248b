package imports

import (
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
	"github.com/mailmove/mailmove/message"
)

// Archives written before mailmove stored a Proton message in each of its
// folders hold it once, with an alias record in the second folder: import
// appends it into both folders, and an alias of a copy in the same folder
// (after a UIDVALIDITY change) is not appended twice.
func TestImportCrossFolderAlias(t *testing.T) {
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			out := t.TempDir() + "/a"
			a, err := archive.Open(out, f, false, "test")
			if err != nil {
				t.Fatal(err)
			}
			raw := "X-Pm-Internal-Id: pm-self\r\nFrom: me@proton.test\r\nTo: me@proton.test\r\nSubject: to myself\r\nMessage-Id: <self@proton.test>\r\nDate: Wed, 01 Jan 2025 00:00:00 +0000\r\n\r\nhello\r\n"
			other := strings.Replace(strings.Replace(raw, "pm-self", "pm-other", 1), "<self@", "<other@", 1)
			date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			put := func(w *archive.FolderWriter, uv, uid uint32, body string, dedup archive.Dedup) {
				t.Helper()
				m := &message.Meta{UIDValidity: uv, UID: uid, Flags: []string{`\Seen`}, InternalDate: date}
				if _, err := w.Put(m, strings.NewReader(body), dedup); err != nil {
					t.Fatal(err)
				}
			}
			in, err := a.OpenFolder("INBOX", []string{"INBOX"})
			if err != nil {
				t.Fatal(err)
			}
			var stored archive.Record
			put(in, 1, 1, raw, func(_ *message.Meta, here archive.Record) (*archive.Record, error) { stored = here; return nil, nil })
			put(in, 1, 2, other, nil)
			// INBOX renumbered: the same message again, an alias of its copy
			put(in, 2, 7, raw, func(*message.Meta, archive.Record) (*archive.Record, error) { return &stored, nil })
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			sent, err := a.OpenFolder("Sent", []string{"Sent"})
			if err != nil {
				t.Fatal(err)
			}
			// the old export: the second folder got an alias record
			put(sent, 5, 3, raw, func(*message.Meta, archive.Record) (*archive.Record, error) { return &stored, nil })
			if err := sent.Close(); err != nil {
				t.Fatal(err)
			}
			a.Close()

			srv := testmail.Mem(t)
			dst := testmail.MemConfig(t, srv.Addr)
			sum := runImport(t, Options{Account: dst, Source: out})
			if sum.Appended != 3 || len(sum.Failed) != 0 {
				t.Fatalf("appended %d, failures %v; want 3 (2 into INBOX, 1 into Sent)", sum.Appended, sum.Failed)
			}
			held := testmail.Held(t, dst)
			if len(held["INBOX"]) != 2 || len(held["Sent"]) != 1 || string(held["Sent"][0].Raw) != raw {
				t.Fatalf("INBOX %d, Sent %d messages; want 2 and 1 (the message to myself)", len(held["INBOX"]), len(held["Sent"]))
			}
			if s := runImport(t, Options{Account: dst, Source: out}); s.Appended != 0 {
				t.Fatalf("re-run appended %d", s.Appended)
			}
		})
	}
}
