package account_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/internal/gmailstub"
)

// TestGmailConnThrottled: the metadata connection reads OK [THROTTLED]
// as a success (the data is there) and goes on, slower.
func TestGmailConnThrottled(t *testing.T) {
	old := account.ThrottleWait
	account.ThrottleWait = time.Millisecond
	defer func() { account.ThrottleWait = old }()
	s := gmailstub.StartT(t, gmailstub.Options{ThrottleMeta: 2})
	s.Add(gmailstub.Mail("a@x", "a", 500), time.Now(), 0, []string{`\Inbox`, "Work"})
	g, err := s.Config(t).DialGmail(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, _, err := g.Examine("[Gmail]/All Mail"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		metas, err := g.FetchMeta()
		if err != nil || len(metas) != 1 || len(metas[0].Labels) != 2 {
			t.Fatalf("fetch %d: %v %+v", i, err, metas)
		}
	}
	if s.Stats().MetaFetches != 3 {
		t.Fatalf("%d metadata FETCHes, want 3", s.Stats().MetaFetches)
	}
}
