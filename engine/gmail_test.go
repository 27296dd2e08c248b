package engine_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/imports"
	"github.com/mailmove/mailmove/internal/gmailstub"
	"github.com/mailmove/mailmove/internal/testmail"
)

// TestGmailSourceThrottled: Gmail answering body FETCHes with
// OK [THROTTLED]: a few such answers only slow the copy down (it
// completes); answers that go on stop the run as at a daily cap (a
// *account.CapError), and the next run completes, each message copied and
// served once.
func TestGmailSourceThrottled(t *testing.T) {
	old := account.ThrottleWait
	account.ThrottleWait = time.Millisecond
	defer func() { account.ThrottleWait = old }()
	seed := func(s *gmailstub.Server) {
		for i := 0; i < 12; i++ {
			l := []string{fmt.Sprint("L", i), "Work"}[:1+i%2] // twelve folders
			s.Add(gmailstub.Mail(fmt.Sprintf("t%d@x", i), "t", 1500), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 0, l)
		}
	}
	run := func(src *gmailstub.Server, dst *account.Config, jpath string) (*engine.Summary, error) {
		s := &export.IMAPSource{Account: src.Config(t)}
		k := &imports.IMAPSink{Account: dst}
		defer s.Close()
		defer k.Close()
		if err := k.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return engine.Run(context.Background(), engine.Options{Source: s, Sink: k, JournalPath: jpath, Connections: 1, Log: t.Logf})
	}
	// a few: slower, complete
	src := gmailstub.StartT(t, gmailstub.Options{Throttle: 2})
	seed(src)
	dst := testmail.Mem(t)
	sum, err := run(src, testmail.MemConfig(t, dst.Addr), filepath.Join(t.TempDir(), "j"))
	if err != nil || sum.Copied != 12 {
		t.Fatalf("throttled twice: %v, %+v", err, sum)
	}
	// on and on: stops like a cap
	src = gmailstub.StartT(t, gmailstub.Options{Throttle: -1})
	seed(src)
	dst = testmail.Mem(t)
	jpath := filepath.Join(t.TempDir(), "j")
	sum, err = run(src, testmail.MemConfig(t, dst.Addr), jpath)
	var ce *account.CapError
	if !errors.As(err, &ce) {
		t.Fatalf("always throttled: %v, want a CapError", err)
	}
	if sum == nil || sum.Copied >= 12 {
		t.Fatalf("always throttled: %+v", sum)
	}
	src.SetThrottle(0)
	sum2, err := run(src, testmail.MemConfig(t, dst.Addr), jpath)
	if err != nil || sum.Copied+sum2.Copied != 12 {
		t.Fatalf("re-run: %v, copied %d then %d", err, sum.Copied, sum2.Copied)
	}
	for id, n := range src.Stats().Served {
		if n != 1 {
			t.Errorf("message %d served %d times", id, n)
		}
	}
	n := 0
	for _, msgs := range testmail.Held(t, testmail.MemConfig(t, dst.Addr)) {
		n += len(msgs)
	}
	if n != 12 {
		t.Fatalf("%d messages at the target, want 12", n)
	}
}

// TestGmailToGmailEngine: the engine from one Gmail stand-in into another
// (several folders at once): one APPEND per message, labels by STORE, the
// target's labels the source's; a second run copies nothing.
func TestGmailToGmailEngine(t *testing.T) {
	src := gmailstub.StartT(t, gmailstub.Options{})
	for i := 0; i < 30; i++ {
		l := [][]string{{`\Inbox`, "Work"}, {"Work", fmt.Sprint("P", i%3)}, {`\Sent`, `\Important`}, {`\Starred`}, nil}[i%5]
		src.Add(gmailstub.Mail(fmt.Sprintf("g%d@x", i), "g", 1200+i), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 0, l)
	}
	dst := gmailstub.StartT(t, gmailstub.Options{})
	jpath := filepath.Join(t.TempDir(), "j")
	for run := 0; run < 2; run++ {
		s := &export.IMAPSource{Account: src.Config(t)}
		k := &imports.IMAPSink{Account: dst.Config(t)}
		if err := k.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		sum, err := engine.Run(context.Background(), engine.Options{Source: s, Sink: k, JournalPath: jpath, Log: t.Logf})
		s.Close()
		k.Close()
		if err != nil || len(sum.Failed) != 0 || len(k.Unlabelled) != 0 || (run == 1 && sum.Copied != 0) {
			t.Fatalf("run %d: %v %+v %v", run, err, sum, k.Unlabelled)
		}
	}
	want := map[string]bool{}
	for _, m := range src.Messages() {
		want[fmt.Sprint(len(m.Body), m.Labels, m.Flags)] = true
	}
	got := dst.Messages()
	if len(got) != 30 || dst.Stats().Appends != 30 {
		t.Fatalf("%d messages, %d APPENDs", len(got), dst.Stats().Appends)
	}
	for _, m := range got {
		if !want[fmt.Sprint(len(m.Body), m.Labels, m.Flags)] {
			t.Errorf("%d bytes, labels %v flags %v: not the source's", len(m.Body), m.Labels, m.Flags)
		}
	}
}
