package archive

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/message"
)

// MoveDeleted takes messages out of their folder into the deleted area:
// an .eml file moves (unless an alias elsewhere still points to it), the
// mbox bytes stay; the index, a reopened archive and Check agree; a second
// call for the same messages (a run that stopped half way) changes nothing.
func TestMoveDeleted(t *testing.T) {
	for _, f := range []Format{EML, Mbox} {
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
			for i := 1; i <= 4; i++ {
				raw := fmt.Sprintf("Message-ID: <%d@x>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i)
				m := &message.Meta{Segments: []string{"INBOX"}, UIDValidity: 7, UID: uint32(i), Flags: []string{}, InternalDate: time.Unix(1700000000+int64(i), 0)}
				if _, err := w.Put(m, bytes.NewReader([]byte(raw)), nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			recs, _ := a.Records("INBOX")
			// Archive holds message 1 again, as an alias of INBOX's copy.
			w, _ = a.OpenFolder("Archive", []string{"Archive"})
			raw := "Message-ID: <1@x>\r\nSubject: 1\r\n\r\nbody 1\r\n"
			m := &message.Meta{Segments: []string{"Archive"}, UIDValidity: 9, UID: 1, Flags: []string{}, InternalDate: time.Unix(1700000001, 0)}
			if _, err := w.Put(m, strings.NewReader(raw), func(*message.Meta, Record) (*Record, error) { return &recs[0], nil }); err != nil {
				t.Fatal(err)
			}
			w.Close()

			when := time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)
			for round := 0; round < 2; round++ {
				gone := []Record{recs[0], recs[1]}
				if n, err := a.MoveDeleted("INBOX", gone, when); err != nil || n != 2 {
					t.Fatalf("round %d: %d %v", round, n, err)
				}
				left, _ := a.Records("INBOX")
				if len(left) != 2 || left[0].UID != 3 || left[1].UID != 4 {
					t.Fatalf("round %d: INBOX holds %+v", round, left)
				}
				del, err := a.DeletedRecords()
				if err != nil || len(del) != 2 || !del[0].DeletedAt.Equal(when) {
					t.Fatalf("round %d: deleted %+v %v", round, del, err)
				}
				if f == EML {
					if del[0].File != recs[0].File {
						t.Fatalf("the file an alias points to moved: %s", del[0].File)
					}
					if del[1].File != ".deleted/2026-12-03/"+recs[1].File {
						t.Fatalf("moved to %s", del[1].File)
					}
				} else if del[1].File != recs[1].File || del[1].Offset != recs[1].Offset {
					t.Fatalf("mbox bytes moved: %+v", del[1])
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(del[1].File))); err != nil {
					t.Fatal(err)
				}
				res, err := a.Check()
				if err != nil || len(res.Problems) != 0 || res.Messages != 4 {
					t.Fatalf("round %d: check %+v %v", round, res, err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopened: the state and the index agree, and a new message
			// goes on after the others (the mbox keeps the moved bytes).
			a, err = Open(root, f, false, "test")
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if st := a.State("INBOX"); st.LastUID != 4 {
				t.Fatalf("state %+v", st)
			}
			// gone lines in the index: raised to the version that says so
			if a.Header.Version != VersionUpdates {
				t.Fatalf("archive version %d after gone lines, want %d", a.Header.Version, VersionUpdates)
			}
			w, _ = a.OpenFolder("INBOX", []string{"INBOX"})
			m = &message.Meta{Segments: []string{"INBOX"}, UIDValidity: 7, UID: 5, Flags: []string{}, InternalDate: time.Unix(1700000005, 0)}
			if _, err := w.Put(m, strings.NewReader("Message-ID: <5@x>\r\n\r\nfive\r\n"), nil); err != nil {
				t.Fatal(err)
			}
			w.Close()
			res, err := a.Check()
			if err != nil || len(res.Problems) != 0 || res.Messages != 5 {
				t.Fatalf("after a new message: %+v %v", res, err)
			}
		})
	}
}
