package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/message"
)

// Background commits index every message once, in order, while the next
// messages are written; the archive checks clean, .mailmove/tmp is empty,
// and a reopened archive knows every message.
func TestCommitBackground(t *testing.T) {
	for _, f := range []Format{Mbox, EML} {
		t.Run(string(f), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "a")
			a, err := Open(root, f, false, "test")
			if err != nil {
				t.Fatal(err)
			}
			long := strings.Repeat("ü", 140) // shortened on disk
			w, err := a.OpenFolder(long, []string{long})
			if err != nil {
				t.Fatal(err)
			}
			const n = 60
			for i := 1; i <= n; i++ {
				raw := fmt.Sprintf("Message-ID: <%d@x>\r\nSubject: %d\r\n\r\nFrom here\r\n%s\r\n", i, i, strings.Repeat("y", i*100))
				m := &message.Meta{Segments: []string{long}, UIDValidity: 1, UID: uint32(i), Flags: []string{}, InternalDate: time.Unix(1700000000+int64(i), 0)}
				if _, err := w.Put(m, bytes.NewReader([]byte(raw)), nil); err != nil {
					t.Fatal(err)
				}
				if i%7 == 0 {
					if err := w.CommitBackground(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if st := a.State(long); st.LastUID != n || st.Count != n || st.Path == "" || !strings.Contains(st.Path, "%~") {
				t.Fatalf("state %+v", st)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if left, _ := os.ReadDir(filepath.Join(root, ".mailmove", "tmp")); len(left) != 0 {
				t.Fatalf("temporary files left: %v", left)
			}
			r, err := OpenReadOnly(root)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			recs, err := r.Records(long)
			if err != nil || len(recs) != n {
				t.Fatalf("%d records, %v", len(recs), err)
			}
			for i, rec := range recs {
				if rec.UID != uint32(i+1) {
					t.Fatalf("record %d is UID %d", i, rec.UID)
				}
			}
			res, err := r.Check()
			if err != nil || len(res.Problems) != 0 || res.Messages != n {
				t.Fatalf("check: %+v %v", res, err)
			}
		})
	}
}

// An archive is raised to version 3 before its first flags_update line,
// and not before: an older mailmove (version 1 or 2), which would take that
// line for a message, refuses it instead; this one reads it, the update
// applied. A mailmove that knows only version 2 is played by lowering
// Version: it refuses the archive, naming the fix.
func TestVersionRaisedForUpdates(t *testing.T) {
	for _, f := range []Format{Mbox, EML} {
		t.Run(string(f), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "a")
			a, err := Open(root, f, false, "test")
			if err != nil {
				t.Fatal(err)
			}
			w, err := a.OpenFolder("INBOX", []string{"INBOX"})
			if err != nil {
				t.Fatal(err)
			}
			m := &message.Meta{Segments: []string{"INBOX"}, UIDValidity: 1, UID: 1, Flags: []string{}, InternalDate: time.Unix(1700000000, 0)}
			if _, err := w.Put(m, strings.NewReader("Message-ID: <1@x>\r\n\r\nbody\r\n"), nil); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			version := func() int {
				t.Helper()
				b, err := os.ReadFile(filepath.Join(root, StateDir, "archive.json"))
				if err != nil {
					t.Fatal(err)
				}
				var h Header
				if err := json.Unmarshal(b, &h); err != nil {
					t.Fatal(err)
				}
				return h.Version
			}
			if v := version(); v != 1 {
				t.Fatalf("a plain archive with messages only: version %d, want 1", v)
			}
			w.UpdateFlags(1, 1, []string{`\Seen`}, nil)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if v := version(); v != VersionUpdates {
				t.Fatalf("after a flags_update line: version %d, want %d", v, VersionUpdates)
			}
			r, err := OpenReadOnly(root)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := r.Records("INBOX")
			r.Close()
			if err != nil || len(recs) != 1 || !slices.Equal(recs[0].Flags, []string{`\Seen`}) {
				t.Fatalf("records %+v, %v: want the message once, \\Seen", recs, err)
			}
			knownVersion = 2
			defer func() { knownVersion = Version }()
			if _, err := OpenReadOnly(root); err == nil || !strings.Contains(err.Error(), "update mailmove") {
				t.Fatalf("a mailmove that knows version 2 opened it: %v", err)
			}
		})
	}
}
