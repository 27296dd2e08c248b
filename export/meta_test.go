package export

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// metaDropSession leaves one UID out of the first metadata FETCH that asks
// for it, and answers OK: the message is still in the folder.
type metaDropSession struct {
	imapserver.Session
	drop imap.UID
	mu   *sync.Mutex
	done *bool
}

func (s *metaDropSession) Fetch(w *imapserver.FetchWriter, set imap.NumSet, o *imap.FetchOptions) error {
	whole := false // the metadata FETCH asks for no whole body
	for _, b := range o.BodySection {
		whole = whole || (b.Specifier == imap.PartSpecifierNone && len(b.HeaderFields) == 0)
	}
	if us, ok := set.(imap.UIDSet); ok && o.Flags && !whole && us.Contains(s.drop) {
		s.mu.Lock()
		first := !*s.done
		*s.done = true
		s.mu.Unlock()
		if first {
			var rest imap.UIDSet
			for _, r := range us {
				for u := r.Start; u <= r.Stop && u != 0; u++ {
					if u != s.drop {
						rest.AddNum(u)
					}
					if u == r.Stop {
						break
					}
				}
			}
			return s.Session.Fetch(w, rest, o)
		}
	}
	return s.Session.Fetch(w, set, o)
}

// A UID the metadata FETCH leaves out is not taken for expunged while the
// folder still holds it: it is asked for again and exported.
func TestMetaFetchLeavesOutAUID(t *testing.T) {
	var mu sync.Mutex
	done := false
	srv, err := account.ServeMemoryWrapped("alice", "secret", nil, imap.CapSet{imap.CapIMAP4rev1: {}},
		func(s imapserver.Session) imapserver.Session {
			return &metaDropSession{Session: s, drop: 4, mu: &mu, done: &done}
		})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	msgs := testmail.Gen(8, []string{"INBOX"}, 51)
	testmail.Put(t, testmail.MemConfig(t, srv.Addr), msgs)
	out := filepath.Join(t.TempDir(), "out")
	sum := export(t, testmail.MemConfig(t, srv.Addr), out, archive.Mbox, 1)
	if !done {
		t.Fatal("the metadata FETCH was never cut short")
	}
	if sum.Messages != 8 || len(sum.Failed) != 0 {
		t.Fatalf("%d exported, failures %v", sum.Messages, sum.Failed)
	}
	checkExact(t, out, msgs)
}
