package account

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestThrottleBackoff(t *testing.T) {
	err := fmt.Errorf("UID FETCH: %w", &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Request is throttled. Suggested Backoff Time: 1500 milliseconds"})
	if d, ok := ThrottleBackoff(err); !ok || d != 1500*time.Millisecond {
		t.Fatalf("got %v %v", d, ok)
	}
	if _, ok := ThrottleBackoff(&imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox is full"}); ok {
		t.Fatal("a plain NO read as throttling")
	}
}

func TestAsCapError(t *testing.T) {
	gmailNo := &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Account exceeded command or bandwidth limits."}
	storage := &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded (mailbox for user is full)"}
	cases := []struct {
		err  error
		dir  string
		gm   bool
		want bool
	}{
		{gmailNo, "download", true, true},
		{gmailNo, "upload", false, true}, // "bandwidth" says it
		{storage, "upload", false, false},
		{storage, "upload", true, true}, // Gmail's APPEND [OVERQUOTA] is its upload cap
		{&imap.Error{Type: imap.StatusResponseTypeNo, Code: "THROTTLED", Text: "slow down"}, "download", false, true},
		{&ByeError{Text: "Account has exceeded the Gmail bandwidth limit for downloads via IMAP"}, "download", true, true},
		{&ByeError{Text: "Session expired, please login again"}, "download", true, false},
		{errors.New("EOF"), "download", true, false},
		{&ConnectError{Op: "login to", Err: &imap.Error{Type: imap.StatusResponseTypeNo, Code: "ALERT", Text: "Account has exceeded the Gmail bandwidth limit for downloads via IMAP"}}, "download", false, true},
	}
	for i, c := range cases {
		if got := AsCapError(fmt.Errorf("x: %w", c.err), c.dir, c.gm) != nil; got != c.want {
			t.Errorf("case %d (%v): cap=%v, want %v", i, c.err, got, c.want)
		}
	}
}

func TestDailyBudget(t *testing.T) {
	dir := t.TempDir()
	b, err := NewDailyBudget(dir, "imaps://a@h", "download", 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Take(60); err != nil {
		t.Fatal(err)
	}
	var ce *CapError
	if err := b.Take(50); !errors.As(err, &ce) || !ce.Own {
		t.Fatalf("over the budget: %v", err)
	}
	if err := b.Save(); err != nil {
		t.Fatal(err)
	}
	b2, _ := NewDailyBudget(dir, "imaps://a@h", "download", 100)
	if b2.Used() != 60 {
		t.Fatalf("read back %d", b2.Used())
	}
	// the next day starts from 0
	b2.now = func() time.Time { return time.Now().Add(24 * time.Hour) }
	if err := b2.Take(90); err != nil {
		t.Fatalf("next day: %v", err)
	}
	// another account has its own count
	b3, _ := NewDailyBudget(dir, "imaps://b@h", "download", 100)
	if b3.Used() != 0 {
		t.Fatalf("another account starts at %d", b3.Used())
	}
}
