package export

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/gmailstub"
)

// gmailCorpus fills a stand-in with messages whose folder the Gmail rule
// decides, and returns what each one's folder must be (by X-GM-MSGID),
// given the names.
func gmailCorpus(s *gmailstub.Server, n gmailstub.Names) map[uint64]string {
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	p := n.Prefix + "/"
	want := map[uint64]string{}
	m1 := s.Add(gmailstub.Mail("m1@x", "inbox work important", 300), d, 0, []string{`\Inbox`, "Work", `\Important`}, `\Seen`)
	want[m1] = "INBOX"
	want[s.Add(gmailstub.Mail("m2@x", "sent work", 400), d, 0, []string{`\Sent`, "Work"}, `\Seen`)] = p + n.Sent
	want[s.Add(gmailstub.Mail("m3@x", "two labels", 500), d, 0, []string{"Zeta", "Büro", "Alpha/Beta"})] = "Alpha/Beta"
	want[s.Add(gmailstub.Mail("m4@x", "archived", 600), d, 0, nil, `\Seen`)] = p + n.All
	want[s.Add(gmailstub.Mail("m5@x", "spam", 700), d, 0, []string{`\Spam`})] = p + n.Spam
	want[s.Add(gmailstub.Mail("m6@x", "trash", 800), d, 0, []string{`\Trash`, "Work"})] = p + n.Trash
	want[s.Add(gmailstub.Mail("m7@x", "draft", 900), d, 0, []string{`\Draft`})] = p + n.Drafts
	want[s.Add(gmailstub.Mail("m8@x", "reply in thread", 1000), d, m1, []string{`\Inbox`, `\Starred`})] = "INBOX"
	return want
}

func gmailExport(t *testing.T, cfg *account.Config, out string, o Options) (*Summary, error) {
	t.Helper()
	a, err := archive.Open(out, archive.EML, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	o.Account, o.Archive, o.Log = cfg, a, t.Logf
	sum, err := Run(context.Background(), o)
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	return sum, err
}

// byMsgID reads the archive's records keyed by X-GM-MSGID, failing on a
// message stored twice.
func byMsgID(t *testing.T, out string) map[uint64]archive.Record {
	t.Helper()
	got := map[uint64]archive.Record{}
	for folder, recs := range archived(t, out) {
		for _, r := range recs {
			id, err := strconv.ParseUint(r.GmailMsgID, 10, 64)
			if err != nil {
				t.Fatalf("%s UID %d: gm_msgid %q: %v", folder, r.UID, r.GmailMsgID, err)
			}
			if _, dup := got[id]; dup {
				t.Fatalf("X-GM-MSGID %d stored twice", id)
			}
			got[id] = r
		}
	}
	return got
}

func TestGmailExportOncePerMessage(t *testing.T) {
	for _, names := range []gmailstub.Names{gmailstub.English, gmailstub.German, gmailstub.British} {
		t.Run(names.Prefix+names.Trash, func(t *testing.T) {
			s := gmailstub.StartT(t, gmailstub.Options{Names: names})
			want := gmailCorpus(s, names)
			out := t.TempDir()
			sum, err := gmailExport(t, s.Config(t), out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !sum.Gmail || sum.Messages != len(want) {
				t.Fatalf("gmail=%v messages=%d, want %d", sum.Gmail, sum.Messages, len(want))
			}
			got := byMsgID(t, out)
			if len(got) != len(want) {
				t.Fatalf("%d messages archived, want %d", len(got), len(want))
			}
			store := map[uint64]gmailstub.Message{}
			var total int64
			for _, m := range s.Messages() {
				store[m.MsgID] = m
				total += int64(len(m.Body))
			}
			for id, folder := range want {
				r := got[id]
				if r.Folder != folder {
					t.Errorf("message %d (%s) in %q, want %q", id, r.MessageID, r.Folder, folder)
				}
				m := store[id]
				if r.Size != int64(len(m.Body)) {
					t.Errorf("message %d: size %d, want %d", id, r.Size, len(m.Body))
				}
				if r.GmailThrID != strconv.FormatUint(m.ThrID, 10) {
					t.Errorf("message %d: thread %q, want %d", id, r.GmailThrID, m.ThrID)
				}
				var labels []string
				for l := range m.Labels {
					if l != `\Spam` && l != `\Trash` {
						labels = append(labels, l)
					}
				}
				sort.Strings(labels)
				rl := append([]string(nil), r.GmailLabels...)
				sort.Strings(rl)
				if !slices.Equal(rl, labels) {
					t.Errorf("message %d: labels %q, want %q", id, rl, labels)
				}
			}
			// the thread of m8 is m1's, and m8 is starred (\Flagged)
			for id, r := range got {
				if r.MessageID == "m8@x" {
					if r.GmailThrID != got[id].GmailThrID || !slices.Contains(r.Flags, `\Flagged`) {
						t.Errorf("m8: thread %s flags %v", r.GmailThrID, r.Flags)
					}
				}
			}
			st := s.Stats()
			if st.BytesServed != total {
				t.Errorf("%d body bytes served, want %d (each message once)", st.BytesServed, total)
			}
			// the folder of a special use records it, for import
			a, err := archive.OpenReadOnly(out)
			if err != nil {
				t.Fatal(err)
			}
			if attrs := a.State(names.Prefix + "/" + names.Sent).Attrs; !slices.Contains(attrs, `\Sent`) {
				t.Errorf("sent folder attrs %v", attrs)
			}
			a.Close()

			// a re-run fetches nothing; a new message alone is fetched
			sum, err = gmailExport(t, s.Config(t), out, Options{})
			if err != nil || sum.Messages != 0 || s.Stats().BytesServed != total {
				t.Fatalf("re-run: %v, %d messages, %d bytes served", err, sum.Messages, s.Stats().BytesServed)
			}
			m9 := gmailstub.Mail("m9@x", "new", 350)
			id9 := s.Add(m9, time.Now(), 0, []string{"Büro"})
			sum, err = gmailExport(t, s.Config(t), out, Options{})
			if err != nil || sum.Messages != 1 || s.Stats().BytesServed != total+int64(len(m9)) {
				t.Fatalf("third run: %v, %d messages, %d bytes served", err, sum.Messages, s.Stats().BytesServed)
			}
			if r := byMsgID(t, out)[id9]; r.Folder != "Büro" {
				t.Errorf("m9 in %q, want Büro (a label with a non-ASCII name)", r.Folder)
			}
		})
	}
}

func TestGmailExportLabelsAsFolders(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	gmailCorpus(s, gmailstub.English)
	out := t.TempDir()
	sum, err := gmailExport(t, s.Config(t), out, Options{GmailLabels: GmailLabelsFolders})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Gmail {
		t.Error("--gmail-labels=folders exported the Gmail way")
	}
	count := map[string]int{}
	for folder, recs := range archived(t, out) {
		count[folder] = len(recs)
	}
	// m1 and m8 in INBOX; Work: m1, m2 (m6 is in Trash); All Mail: all but spam and trash
	want := map[string]int{"INBOX": 2, "Work": 2, "Zeta": 1, "Büro": 1, "Alpha/Beta": 1, "[Gmail]/All Mail": 6, "[Gmail]/Sent Mail": 1,
		"[Gmail]/Spam": 1, "[Gmail]/Trash": 1, "[Gmail]/Drafts": 1, "[Gmail]/Important": 1, "[Gmail]/Starred": 1}
	for f, n := range want {
		if count[f] != n {
			t.Errorf("%s: %d messages, want %d (all: %v)", f, count[f], n, count)
		}
	}
}

// TestGmailExportOverQuota: the stand-in answers [OVERQUOTA] after some
// bytes; the run stops with a CapError, and the next one (the next day)
// completes, fetching no message twice.
func TestGmailExportOverQuota(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{DownloadCap: 2000})
	want := gmailCorpus(s, gmailstub.English)
	out := t.TempDir()
	sum, err := gmailExport(t, s.Config(t), out, Options{ChunkSize: 2})
	var ce *account.CapError
	if !errors.As(err, &ce) || ce.Own || ce.Direction != "download" {
		t.Fatalf("want a download CapError, got %v", err)
	}
	if sum == nil || sum.Messages == 0 || sum.Messages >= len(want) {
		t.Fatalf("first run stored %v messages, want some but not all", sum)
	}
	first := s.Stats().BytesServed
	s.SetCaps(0, 0) // the next day
	if _, err := gmailExport(t, s.Config(t), out, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := byMsgID(t, out); len(got) != len(want) {
		t.Fatalf("%d messages after the re-run, want %d", len(got), len(want))
	}
	for id, n := range s.Stats().Served {
		if n != 1 {
			t.Errorf("message %d served %d times", id, n)
		}
	}
	var total int64
	for _, m := range s.Messages() {
		total += int64(len(m.Body))
	}
	if first+s.Stats().BytesServed != total {
		t.Errorf("served %d + %d bytes, want %d in all", first, s.Stats().BytesServed, total)
	}
}

// TestGmailExportMaxBytesPerDay: --max-bytes-per-day stops the run before
// it crosses the budget; the budget is kept per day in the state dir.
func TestGmailExportMaxBytesPerDay(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	want := gmailCorpus(s, gmailstub.English)
	out, state := t.TempDir(), t.TempDir()
	cfg := s.Config(t)
	b, err := account.NewDailyBudget(state, cfg.URL.String(), "download", 2500)
	if err != nil {
		t.Fatal(err)
	}
	_, err = gmailExport(t, cfg, out, Options{Budget: b})
	var ce *account.CapError
	if !errors.As(err, &ce) || !ce.Own {
		t.Fatalf("want an own CapError, got %v", err)
	}
	if served := s.Stats().BytesServed; served > 2500 || served == 0 {
		t.Fatalf("%d bytes served under a budget of 2500", served)
	}
	// a second run on the same day, with the budget read back, fetches nothing
	b2, err := account.NewDailyBudget(state, cfg.URL.String(), "download", 2500)
	if err != nil {
		t.Fatal(err)
	}
	before := s.Stats().BytesServed
	if b2.Used() != before {
		t.Errorf("budget file says %d bytes, %d were served", b2.Used(), before)
	}
	if _, err = gmailExport(t, cfg, out, Options{Budget: b2}); !errors.As(err, &ce) {
		t.Fatalf("second run the same day: %v", err)
	}
	if after := s.Stats().BytesServed; after+0 > 2500 {
		t.Fatalf("%d bytes served in a day with a budget of 2500", after)
	}
	// without a budget the rest comes, nothing twice
	if _, err := gmailExport(t, cfg, out, Options{}); err != nil {
		t.Fatal(err)
	}
	if got := byMsgID(t, out); len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for id, n := range s.Stats().Served {
		if n != 1 {
			t.Errorf("message %d served %d times", id, n)
		}
	}
}

// TestGmailRefreshFlags: --refresh-flags brings the flags and labels of
// archived Gmail messages up to date (index lines only, no body fetched),
// an emptied label list included.
func TestGmailRefreshFlags(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	a := s.Add(gmailstub.Mail("r1@x", "a", 300), d, 0, []string{`\Inbox`, "Work"})
	b := s.Add(gmailstub.Mail("r2@x", "b", 300), d, 0, []string{"Work"})
	out := t.TempDir()
	if _, err := gmailExport(t, s.Config(t), out, Options{}); err != nil {
		t.Fatal(err)
	}
	served := s.Stats().BytesServed
	s.Relabel(a, []string{"Work", "Later"}, `\Seen`) // archived from INBOX, read, labelled
	s.Relabel(b, nil)                                // its last label removed
	sum, err := gmailExport(t, s.Config(t), out, Options{})
	if err != nil || sum.FlagsUpdated != 0 {
		t.Fatalf("without --refresh-flags: %v, %d updated", err, sum.FlagsUpdated)
	}
	sum, err = gmailExport(t, s.Config(t), out, Options{RefreshFlags: true})
	if err != nil || sum.FlagsUpdated != 2 || sum.Messages != 0 {
		t.Fatalf("--refresh-flags: %v, %+v", err, sum)
	}
	if s.Stats().BytesServed != served {
		t.Fatal("a refresh fetched bodies")
	}
	got := byMsgID(t, out)
	ra, rb := got[a], got[b]
	if ra.Folder != "INBOX" || !slices.Equal(ra.GmailLabels, []string{"Later", "Work"}) || !slices.Equal(ra.Flags, []string{`\Seen`}) {
		t.Errorf("r1: %s %v %v", ra.Folder, ra.GmailLabels, ra.Flags)
	}
	if rb.Folder != "Work" || len(rb.GmailLabels) != 0 {
		t.Errorf("r2: %s %v", rb.Folder, rb.GmailLabels)
	}
	// nothing changed since: nothing recorded
	if sum, err = gmailExport(t, s.Config(t), out, Options{RefreshFlags: true}); err != nil || sum.FlagsUpdated != 0 {
		t.Fatalf("second refresh: %v, %d updated", err, sum.FlagsUpdated)
	}
}

// TestGmailMetadataPassReconnects: a connection dropped in the middle of
// the metadata pass is dialled again; the export completes, each body
// fetched once.
func TestGmailMetadataPassReconnects(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 60; i++ {
		s.Add(gmailstub.Mail(fmt.Sprintf("p%d@x", i), "p", 200), d, 0, []string{`\Inbox`, "Some/Label"})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &cutProxy{ln: ln, target: s.Addr, n: 2, limitOf: func(i int32) (int64, bool) {
		if i == 2 { // the metadata connection (the first is go-imap's)
			return 6000, true
		}
		return 1 << 40, false
	}}
	go p.serve()
	cfg := s.Config(t)
	cfg.URL.Port = p.ln.Addr().(*net.TCPAddr).Port
	old := firstBackoff
	firstBackoff = 10 * time.Millisecond
	defer func() { firstBackoff = old }()
	out := t.TempDir()
	sum, err := gmailExport(t, cfg, out, Options{})
	if err != nil || sum.Messages != 60 {
		t.Fatalf("%v: %d messages", err, sum.Messages)
	}
	if atomic.LoadInt32(&p.cuts) < 3 {
		t.Fatalf("%d connections: the metadata pass was not dialled again", p.cuts)
	}
	for id, n := range s.Stats().Served {
		if n != 1 {
			t.Errorf("message %d served %d times", id, n)
		}
	}
}

// TestGmailNothingNewNoPass: when All Mail, Spam and Trash have not moved
// since the last complete run, a re-run skips the metadata pass; a new
// message, --refresh-flags or other --folder/--exclude bring it back.
func TestGmailNothingNewNoPass(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	gmailCorpus(s, gmailstub.English)
	out := t.TempDir()
	first, err := gmailExport(t, s.Config(t), out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	passes := s.Stats().MetaFetches
	sum, err := gmailExport(t, s.Config(t), out, Options{})
	if err != nil || s.Stats().MetaFetches != passes || sum.Folders != first.Folders || sum.Messages != 0 {
		t.Fatalf("re-run: %v, %d metadata fetches (was %d), %d folders (was %d)", err, s.Stats().MetaFetches, passes, sum.Folders, first.Folders)
	}
	if _, err := gmailExport(t, s.Config(t), out, Options{RefreshFlags: true}); err != nil || s.Stats().MetaFetches == passes {
		t.Fatalf("--refresh-flags made no pass: %v", err)
	}
	passes = s.Stats().MetaFetches
	if _, err := gmailExport(t, s.Config(t), out, Options{Exclude: []string{"Zeta"}}); err != nil || s.Stats().MetaFetches == passes {
		t.Fatalf("another --exclude made no pass: %v", err)
	}
	s.Add(gmailstub.Mail("n1@x", "new", 300), time.Now(), 0, []string{`\Trash`})
	passes = s.Stats().MetaFetches
	sum, err = gmailExport(t, s.Config(t), out, Options{Exclude: []string{"Zeta"}})
	if err != nil || sum.Messages != 1 || s.Stats().MetaFetches == passes {
		t.Fatalf("a message moved to Trash: %v, %d messages", err, sum.Messages)
	}
}

// TestGmailMovedNotTwice: a message archived from All Mail that moves to
// Trash (another mailbox, another UID), and one whose new labels would
// choose another folder, are not fetched again: each stays in the folder
// it was archived in, and --refresh-flags records its new labels there.
func TestGmailMovedNotTwice(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	a := s.Add(gmailstub.Mail("t1@x", "to trash", 300), d, 0, []string{`\Inbox`, "Work"})
	b := s.Add(gmailstub.Mail("t2@x", "to inbox", 300), d, 0, []string{"Work"})
	s.Add(gmailstub.Mail("t3@x", "stays", 300), d, 0, []string{`\Inbox`})
	out := t.TempDir()
	if sum, err := gmailExport(t, s.Config(t), out, Options{}); err != nil || sum.Messages != 3 {
		t.Fatalf("first run: %v, %+v", err, sum)
	}
	served := s.Stats().BytesServed
	s.Relabel(a, []string{`\Trash`, "Work"}, `\Seen`) // now in Trash only
	s.Relabel(b, []string{`\Inbox`, "Work", "Later"}) // the rule would say INBOX now
	for i, o := range []Options{{}, {RefreshFlags: true}, {}} {
		sum, err := gmailExport(t, s.Config(t), out, o)
		if err != nil || sum.Messages != 0 || !sum.Gmail {
			t.Fatalf("run %d: %v, %+v", i+2, err, sum)
		}
		if s.Stats().BytesServed != served {
			t.Fatalf("run %d fetched bodies again", i+2)
		}
	}
	got := byMsgID(t, out)
	if len(got) != 3 {
		t.Fatalf("%d messages archived, want 3", len(got))
	}
	ra, rb := got[a], got[b]
	if ra.Folder != "INBOX" || !slices.Contains(ra.Flags, `\Seen`) {
		t.Errorf("t1: %s %v (want it in INBOX, where it was archived, read)", ra.Folder, ra.Flags)
	}
	if rb.Folder != "Work" || !slices.Contains(rb.GmailLabels, "Later") || !slices.Contains(rb.GmailLabels, `\Inbox`) {
		t.Errorf("t2: %s %v (want it in Work, its new labels recorded)", rb.Folder, rb.GmailLabels)
	}
	for id, n := range s.Stats().Served {
		if n != 1 {
			t.Errorf("message %d served %d times", id, n)
		}
	}
}

// gmailProgress records what a run reports.
type gmailProgress struct {
	planned, written int
}

func (p *gmailProgress) Planned(n int, _ int64) { p.planned = n }
func (p *gmailProgress) Message(string, int64)  { p.written++ }

// TestGmailProgressPlanned: a run plans the messages the archive does not
// hold yet (not every message of the account), and reports each it writes.
func TestGmailProgressPlanned(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	s.Add(gmailstub.Mail("p1@x", "a", 300), d, 0, []string{`\Inbox`})
	s.Add(gmailstub.Mail("p2@x", "b", 300), d, 0, []string{"Work"})
	s.Add(gmailstub.Mail("p3@x", "c", 300), d, 0, nil)
	out := t.TempDir()
	p := &gmailProgress{}
	if _, err := gmailExport(t, s.Config(t), out, Options{Progress: p}); err != nil || p.planned != 3 || p.written != 3 {
		t.Fatalf("first run: %v, planned %d, wrote %d", err, p.planned, p.written)
	}
	s.Add(gmailstub.Mail("p4@x", "d", 300), d, 0, []string{`\Inbox`})
	p = &gmailProgress{}
	if _, err := gmailExport(t, s.Config(t), out, Options{Progress: p}); err != nil || p.planned != 1 || p.written != 1 {
		t.Fatalf("second run: %v, planned %d, wrote %d (want 1 and 1)", err, p.planned, p.written)
	}
}
