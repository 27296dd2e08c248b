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

// throttleSession answers the first body FETCHes the way Exchange Online
// throttles: NO "Request is throttled. Suggested Backoff Time: N
// milliseconds".
type throttleSession struct {
	imapserver.Session
	mu   *sync.Mutex
	left *int
}

func (s *throttleSession) Fetch(w *imapserver.FetchWriter, set imap.NumSet, o *imap.FetchOptions) error {
	s.mu.Lock()
	throttle := len(o.BodySection) > 0 && *s.left > 0
	if throttle {
		*s.left--
	}
	s.mu.Unlock()
	if throttle {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Request is throttled. Suggested Backoff Time: 20 milliseconds"}
	}
	return s.Session.Fetch(w, set, o)
}

// TestMicrosoftThrottleHonoured: a throttled FETCH is waited for and asked
// again, without counting as a failed try: every message arrives.
func TestMicrosoftThrottleHonoured(t *testing.T) {
	var mu sync.Mutex
	left := 5 // more than the 3 tries a message gets
	srv, err := account.ServeMemoryWrapped("alice", "secret", nil, imap.CapSet{imap.CapIMAP4rev1: {}},
		func(s imapserver.Session) imapserver.Session {
			return &throttleSession{Session: s, mu: &mu, left: &left}
		})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := &testServer{srv: srv, addr: srv.Addr}
	ts.put(t, testmail.Gen(12, []string{"INBOX"}, 5))
	sum := export(t, ts.config(t, ts.addr), filepath.Join(t.TempDir(), "out"), archive.EML, 1)
	if len(sum.Failed) != 0 || sum.Messages != 12 {
		t.Fatalf("%d messages, failures %+v", sum.Messages, sum.Failed)
	}
	if left != 0 {
		t.Fatalf("%d throttles left unused", left)
	}
}
