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
