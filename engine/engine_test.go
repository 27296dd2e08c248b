package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/imports"
	"github.com/mailmove/mailmove/internal/testmail"
)

func init() { *engine.FirstBackoff = 20 * time.Millisecond }

// copyRun runs the engine from src to dst with the journal at jpath.
func copyRun(t *testing.T, src, dst *account.Config, jpath string, mod func(*engine.Options, *export.IMAPSource, *imports.IMAPSink)) *engine.Summary {
	t.Helper()
	s := &export.IMAPSource{Account: src}
	k := &imports.IMAPSink{Account: dst}
	defer s.Close()
	defer k.Close()
	o := engine.Options{Source: s, Sink: k, JournalPath: jpath, Log: t.Logf}
	if mod != nil {
		mod(&o, s, k)
	}
	if err := k.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sum, err := engine.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	if len(sum.Check.Missing) > 0 {
		t.Fatalf("the check found messages missing: %+v", sum.Check.Missing)
	}
	return sum
}

// view describes an account: per folder, the sorted list of
// "sha256 flags internaldate" of its messages.
func view(t *testing.T, cfg *account.Config) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for f, msgs := range testmail.Held(t, cfg) {
		for _, m := range msgs {
			sum := sha256.Sum256(m.Raw)
			var fl []string
			for _, x := range m.Flags {
				fl = append(fl, strings.ToLower(string(x)))
			}
			sort.Strings(fl)
			out[f] = append(out[f], fmt.Sprintf("%s %v %s", hex.EncodeToString(sum[:]), fl, m.Date.UTC().Format(time.RFC3339)))
		}
		sort.Strings(out[f])
	}
	return out
}

func sameView(t *testing.T, want, got map[string][]string) {
	t.Helper()
	for f, w := range want {
		if strings.Join(w, "\n") != strings.Join(got[f], "\n") {
			t.Errorf("folder %s: target differs from source:\nsource %d: %v\ntarget %d: %v", f, len(w), w, len(got[f]), got[f])
		}
	}
	for f, g := range got {
		if _, ok := want[f]; !ok && len(g) > 0 {
			t.Errorf("folder %s only at the target: %v", f, g)
		}
	}
}

// oddMessages are real but odd messages: a `From ` first line, no header,
// no final newline, 8-bit bytes, LF only, and a 30 MB one.
func oddMessages() []testmail.Msg {
	d := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	raw := []string{
		"From someone@example.org Sat Jan  3 01:05:34 1996\r\nFrom: a@example.org\r\nSubject: from line\r\nMessage-ID: <odd1@example.org>\r\n\r\nbody\r\n",
		"just a body line, no header at all\r\nand another\r\n",
		"From: b@example.org\r\nSubject: no final newline\r\nMessage-ID: <odd3@example.org>\r\n\r\nthe end without newline",
		"From: c@example.org\r\nSubject: 8-bit \xe4\xf6\xfc\r\nMessage-ID: <odd4@example.org>\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nGr\xfc\xdfe \xe0 tous\r\n>From quoted\r\nFrom unquoted\r\n",
		"From: d@example.org\nSubject: LF only\nMessage-ID: <odd5@example.org>\n\nline\n",
		"From: e@example.org\r\nSubject: no id\r\n\r\nsame size body A\r\n",
		"From: e@example.org\r\nSubject: no id\r\n\r\nsame size body B\r\n",
	}
	var out []testmail.Msg
	for i, r := range raw {
		out = append(out, testmail.Msg{Folder: "Odd", Raw: []byte(r), Flags: []imap.Flag{imap.FlagSeen}, Date: d.Add(time.Duration(i) * time.Minute)})
	}
	var b strings.Builder
	b.WriteString("From: big@example.org\r\nSubject: 30 MB\r\nMessage-ID: <big30@example.org>\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJD", 19) + "\r\n"
	for b.Len() < 30<<20 {
		b.WriteString(line)
	}
	out = append(out, testmail.Msg{Folder: "Big", Raw: []byte(b.String()), Flags: []imap.Flag{imap.FlagFlagged, "$Work"}, Date: d})
	return out
}

// Dovecot -> Dovecot: every folder byte for byte, with flags, keywords and
// dates; then changes on the source (new messages, flags, a deletion) and
// a re-run with Delete: the target follows; a no-op run changes nothing.
func TestDovecotToDovecot(t *testing.T) {
	d := testmail.StartDovecot(t)
	src, dst := d.Config(t, "imaps", "src"), d.Config(t, "imaps", "dst")
	testmail.Put(t, src, append(testmail.Corpus(), oddMessages()...))
	jpath := filepath.Join(t.TempDir(), "j.jsonl")
	sum := copyRun(t, src, dst, jpath, nil)
	if n := len(testmail.Corpus()) + len(oddMessages()); sum.Copied != n || len(sum.Failed) != 0 || sum.Check.Messages != n {
		t.Fatalf("copied %d, failed %v, checked %d", sum.Copied, sum.Failed, sum.Check.Messages)
	}
	sameView(t, view(t, src), view(t, dst))

	// a message someone put at the target stays, whatever --delete says
	testmail.Put(t, dst, []testmail.Msg{{Folder: "INBOX", Raw: []byte("From: x@example.org\r\nMessage-ID: <target-only@example.org>\r\n\r\nmine\r\n"), Date: time.Now()}})
	// changes on the source
	c, err := src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var set imap.UIDSet
	set.AddRange(1, 3)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, "$NewKeyword"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	set = imap.UIDSet{}
	set.AddNum(1)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	set = imap.UIDSet{}
	set.AddNum(5)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	testmail.Put(t, src, testmail.Gen(5, []string{"INBOX", "Sent"}, 77))
	sum = copyRun(t, src, dst, jpath, func(o *engine.Options, _ *export.IMAPSource, _ *imports.IMAPSink) { o.Delete = true })
	if sum.Copied != 5 || sum.FlagsUpdated != 3 || sum.Deleted != 1 {
		t.Fatalf("re-run: copied %d (want 5), flags %d (want 3), deleted %d (want 1)", sum.Copied, sum.FlagsUpdated, sum.Deleted)
	}
	want, got := view(t, src), view(t, dst)
	if len(got["INBOX"]) != len(want["INBOX"])+1 {
		t.Fatalf("INBOX: %d at the target, want the source's %d and the target's own", len(got["INBOX"]), len(want["INBOX"]))
	}
	var inbox []string
	for _, m := range got["INBOX"] {
		if !strings.HasPrefix(m, hashOf("From: x@example.org\r\nMessage-ID: <target-only@example.org>\r\n\r\nmine\r\n")) {
			inbox = append(inbox, m)
		}
	}
	got["INBOX"] = inbox
	sameView(t, want, got)

	// nothing changed: nothing copied, nothing stored
	sum = copyRun(t, src, dst, jpath, nil)
	if sum.Copied != 0 || sum.FlagsUpdated != 0 || sum.AlreadyThere != 0 {
		t.Fatalf("no-op run: copied %d, flags %d, found %d", sum.Copied, sum.FlagsUpdated, sum.AlreadyThere)
	}
	// with CONDSTORE, no folder was even opened
	if sum.Check.Unchanged != len(sum.Folders) {
		for _, f := range sum.Folders {
			t.Logf("%s: unchanged %v", f.Source, f.Unchanged)
		}
		t.Fatalf("no-op run: %d of %d folders skipped as unchanged", sum.Check.Unchanged, len(sum.Folders))
	}
	// a flag changed: only its folder is looked at, and the change arrives
	c, err = src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	set = imap.UIDSet{}
	set.AddNum(2)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	sum = copyRun(t, src, dst, jpath, nil)
	if sum.FlagsUpdated != 1 || sum.Check.Unchanged != len(sum.Folders)-1 {
		t.Fatalf("one flag changed: %d updated, %d of %d folders unchanged", sum.FlagsUpdated, sum.Check.Unchanged, len(sum.Folders))
	}
	want, got = view(t, src), view(t, dst)
	got["INBOX"] = inbox
	sameView(t, want, got)
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Without a journal (a new state folder, or a source renumbered) nothing
// is copied twice: what the target holds is found by key, and messages
// without engine.Message-ID by their header.
func TestNoJournalNoDuplicates(t *testing.T) {
	d := testmail.StartDovecot(t)
	src, dst := d.Config(t, "imaps", "src"), d.Config(t, "imaps", "dst")
	msgs := append(testmail.Gen(30, []string{"INBOX", "Sent"}, 5), oddMessages()[:7]...)
	testmail.Put(t, src, msgs)
	copyRun(t, src, dst, filepath.Join(t.TempDir(), "a.jsonl"), nil)
	sum := copyRun(t, src, dst, filepath.Join(t.TempDir(), "b.jsonl"), nil)
	if sum.Copied != 0 || sum.AlreadyThere != len(msgs) {
		t.Fatalf("second run with a new journal copied %d, found %d of %d", sum.Copied, sum.AlreadyThere, len(msgs))
	}
	sameView(t, view(t, src), view(t, dst))
}

// --since/--before select by INTERNALDATE; a dry run changes nothing.
func TestSelectAndDryRun(t *testing.T) {
	d := testmail.StartDovecot(t)
	src, dst := d.Config(t, "imaps", "src"), d.Config(t, "imaps", "dst")
	msgs := testmail.Gen(48, []string{"Lists"}, 9) // one an hour from 2020-01-01 00:00 +01:00
	testmail.Put(t, src, msgs)
	jpath := filepath.Join(t.TempDir(), "j.jsonl")
	sum := copyRun(t, src, dst, jpath, func(o *engine.Options, _ *export.IMAPSource, _ *imports.IMAPSink) { o.DryRun = true })
	var lists *engine.FolderSummary
	for _, f := range sum.Folders {
		if f.Source == "Lists" {
			lists = f
		}
	}
	if lists == nil || lists.Copy != 48 || !lists.Create || lists.Target != "Lists" || lists.Messages != 48 || lists.CopyBytes == 0 || sum.Copied != 0 {
		t.Fatalf("dry run: %+v", lists)
	}
	if n := len(view(t, dst)["Lists"]); n != 0 {
		t.Fatalf("the dry run copied %d messages", n)
	}
	day := time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)
	sum = copyRun(t, src, dst, jpath, func(o *engine.Options, _ *export.IMAPSource, _ *imports.IMAPSink) {
		o.Select = engine.Select{Since: day, Before: day.AddDate(0, 0, 1)}
	})
	// SEARCH SINCE/BEFORE compare dates without time of day, in a zone
	// the server picks: the day's 24 messages, give or take the zone
	if sum.Copied < 20 || sum.Copied > 28 {
		t.Fatalf("--since/--before copied %d, want about 24", sum.Copied)
	}
	for _, m := range testmail.Held(t, dst)["Lists"] {
		if m.Date.Before(day.Add(-14*time.Hour)) || !m.Date.Before(day.Add(38*time.Hour)) {
			t.Errorf("copied a message of %v", m.Date)
		}
	}
	// then everything: the rest, nothing twice
	sum = copyRun(t, src, dst, jpath, nil)
	if got := len(testmail.Held(t, dst)["Lists"]); got != 48 || sum.Copied != 48-(got-sum.Copied) {
		t.Fatalf("after a run without dates: %d messages, copied %d", got, sum.Copied)
	}
	sameView(t, view(t, src), view(t, dst))
}

// cutProxy forwards to target and cuts the first n connections after a
// random number of bytes in one direction (up: client to server, for a
// target; down: server to client, for a source), with a RST or a FIN.
type cutProxy struct {
	ln     net.Listener
	target string
	up     bool
	n      int32
	count  int32
	r      *rand.Rand
	mu     sync.Mutex
	cuts   atomic.Int32
}

func newCutProxy(t *testing.T, target string, up bool, n int32, seed int64) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, up: up, n: n, r: rand.New(rand.NewSource(seed))}
	go p.serve()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		i := atomic.AddInt32(&p.count, 1)
		p.mu.Lock()
		limit := int64(8_000 + p.r.Intn(600_000))
		rst := p.r.Intn(2) == 0
		p.mu.Unlock()
		cut := i <= p.n
		pipe := func(dst, src net.Conn, cutHere bool) {
			if cutHere {
				io.CopyN(dst, src, limit)
				p.cuts.Add(1)
				for _, x := range []net.Conn{c, s} {
					if tc, ok := x.(*net.TCPConn); ok && rst {
						tc.SetLinger(0)
					}
					x.Close()
				}
				return
			}
			io.Copy(dst, src)
			dst.Close()
		}
		go pipe(s, c, cut && p.up)
		go pipe(c, s, cut && !p.up)
	}
}

func viaProxy(t *testing.T, cfg *account.Config, addr string) *account.Config {
	u, err := account.ParseURL("imaps://" + cfg.URL.User + "@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	return &account.Config{URL: u, CAFile: cfg.CAFile, Password: cfg.Password}
}

// Connections cut at random byte counts, on the source side (in the
// middle of FETCH literals) and on the target side (in the middle of
// APPEND literals), with RST and FIN: every message arrives once.
func TestCutConnections(t *testing.T) {
	for _, side := range []string{"source", "target"} {
		for seed := int64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s-%d", side, seed), func(t *testing.T) {
				d := testmail.StartDovecot(t)
				src, dst := d.Config(t, "imaps", "src"), d.Config(t, "imaps", "dst")
				testmail.Put(t, src, testmail.Gen(120, []string{"INBOX", "Sent", "Archive"}, seed))
				p := newCutProxy(t, d.TLSAddr, side == "target", 5, seed)
				from, to := src, dst
				if side == "source" {
					from = viaProxy(t, src, p.ln.Addr().String())
				} else {
					to = viaProxy(t, dst, p.ln.Addr().String())
				}
				sum := copyRun(t, from, to, filepath.Join(t.TempDir(), "j.jsonl"), func(o *engine.Options, _ *export.IMAPSource, _ *imports.IMAPSink) { o.Connections = 2 })
				if p.cuts.Load() == 0 {
					t.Fatal("the proxy cut nothing")
				}
				if len(sum.Failed) != 0 {
					t.Fatalf("failures: %+v", sum.Failed)
				}
				sameView(t, view(t, src), view(t, dst))
			})
		}
	}
}

type bridgeExpected struct {
	PMID    string   `json:"pm_id"`
	Folder  string   `json:"folder"`
	Also    []string `json:"also"`
	Labels  []string `json:"labels"`
	Starred bool     `json:"starred"`
}

// heldByPMID returns, per folder, the messages by X-Pm-Internal-Id.
func heldByPMID(t *testing.T, cfg *account.Config) map[string]map[string][]testmail.Msg {
	out := map[string]map[string][]testmail.Msg{}
	for f, msgs := range testmail.Held(t, cfg) {
		out[f] = map[string][]testmail.Msg{}
		for _, m := range msgs {
			_, pm := account.HeaderIDs(m.Raw[:min(len(m.Raw), 8192)])
			out[f][pm] = append(out[f][pm], m)
		}
	}
	return out
}

func hasFlag(m testmail.Msg, f string) bool {
	for _, x := range m.Flags {
		if strings.EqualFold(string(x), f) {
			return true
		}
	}
	return false
}

// The Bridge stand-in -> Dovecot: each Proton message once in each of its
// folders (Folders/ dropped, the message in no folder in Archive), labels
// as keywords, starred as \Flagged, flags and dates as on Bridge; then a
// flag and a label changed on Bridge, and the re-run brings them over.
func TestBridgeToDovecot(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	d := testmail.StartDovecot(t)
	src := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	dst := d.Config(t, "imaps", "dst")
	var want []bridgeExpected
	b, _ := os.ReadFile(filepath.Join(br.Dir, "expected.json"))
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	jpath := filepath.Join(t.TempDir(), "j.jsonl")
	sum := copyRun(t, src, dst, jpath, nil)
	if len(sum.Failed) != 0 || sum.AllMailOnly != 0 && false {
		t.Fatalf("failures: %+v", sum.Failed)
	}
	srcHeld := heldByPMID(t, src)
	check := func() {
		t.Helper()
		got := heldByPMID(t, dst)
		n := 0
		for _, w := range want {
			for _, f := range append([]string{w.Folder}, w.Also...) {
				tf := strings.TrimPrefix(f, "Folders/")
				if f == "All Mail" {
					tf = "Archive"
				}
				copies := got[tf][w.PMID]
				if len(copies) != 1 {
					t.Errorf("%s in %s: %d copies, want 1", w.PMID, tf, len(copies))
					continue
				}
				n++
				m := copies[0]
				for _, l := range w.Labels {
					kw := l
					if l == "Starred" {
						kw = `\Flagged`
					}
					if !hasFlag(m, kw) {
						t.Errorf("%s in %s: no %s among %v", w.PMID, tf, kw, m.Flags)
					}
				}
				if w.Starred != hasFlag(m, `\Flagged`) {
					t.Errorf("%s in %s: starred %v, flags %v", w.PMID, tf, w.Starred, m.Flags)
				}
				if s := srcHeld[f][w.PMID]; len(s) == 1 {
					if !s[0].Date.Equal(m.Date) {
						t.Errorf("%s in %s: date %v, want %v", w.PMID, tf, m.Date, s[0].Date)
					}
					for _, fl := range s[0].Flags {
						if !hasFlag(m, string(fl)) {
							t.Errorf("%s in %s: flag %s lost: %v", w.PMID, tf, fl, m.Flags)
						}
					}
				}
			}
		}
		total := 0
		for _, byID := range got {
			for _, ms := range byID {
				total += len(ms)
			}
		}
		if total != n {
			t.Errorf("the target holds %d messages, want %d", total, n)
		}
	}
	check()

	// on Bridge: a read message gets a label and is marked unread
	c, err := src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var target bridgeExpected
	for _, w := range want {
		if w.Folder == "INBOX" && len(w.Also) == 0 && w.PMID[3:7] != "0000" && !slices.Contains(w.Labels, "Important") {
			target = w
			break
		}
	}
	if target.PMID == "" {
		t.Fatal("no plain INBOX message in the stand-in")
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	ids, err := c.FetchHeaderField("X-Pm-Internal-Id")
	if err != nil {
		t.Fatal(err)
	}
	var uid uint32
	for u, id := range ids {
		if id == target.PMID {
			uid = u
		}
	}
	var set imap.UIDSet
	set.AddNum(imap.UID(uid))
	if _, err := c.Copy(set, "Labels/Important").Wait(); err != nil {
		t.Fatalf("labelling on Bridge: %v", err)
	}
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	for i := range want {
		if want[i].PMID == target.PMID {
			want[i].Labels = append(want[i].Labels, "Important")
		}
	}
	sum = copyRun(t, src, dst, jpath, nil)
	if sum.Copied != 0 || sum.FlagsUpdated < 1 {
		t.Fatalf("re-run: copied %d, flags updated %d", sum.Copied, sum.FlagsUpdated)
	}
	srcHeld = heldByPMID(t, src)
	check()
	got := heldByPMID(t, dst)
	if m := got["INBOX"][target.PMID]; len(m) != 1 || hasFlag(m[0], `\Seen`) || !hasFlag(m[0], "Important") {
		t.Fatalf("the label and flag set on Bridge did not arrive: %d copies, flags %v, on Bridge %v", len(m), m[0].Flags, srcHeld["INBOX"][target.PMID][0].Flags)
	}
}

// Dovecot -> the Bridge stand-in: Bridge's rules as a target (folders under
// Folders/, a message without From refused and reported, keywords Bridge
// cannot store reported), and a re-run adds nothing.
func TestDovecotToBridge(t *testing.T) {
	br := testmail.StartBridge(t, 4)
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	dst := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	msgs := testmail.Gen(12, []string{"INBOX", "Projects/Alpha"}, 4)
	msgs = append(msgs, testmail.Msg{Folder: "INBOX", Raw: []byte("Subject: no from\r\nDate: Mon, 06 Jan 2025 09:15:00 +0100\r\nMessage-ID: <nofrom@example.org>\r\n\r\nx\r\n"), Date: time.Now()})
	testmail.Put(t, src, msgs)
	jpath := filepath.Join(t.TempDir(), "j.jsonl")
	sum := copyRun(t, src, dst, jpath, func(o *engine.Options, _ *export.IMAPSource, _ *imports.IMAPSink) { o.Connections = 2 })
	if sum.Copied != 12 || len(sum.Failed) != 1 || !strings.Contains(sum.Failed[0].Error, "From") {
		t.Fatalf("copied %d, failed %+v", sum.Copied, sum.Failed)
	}
	if len(sum.Unstorable) == 0 || sum.Unstorable[0] != "$Label1" {
		t.Fatalf("unstorable keywords not reported: %v", sum.Unstorable)
	}
	got := heldByPMID(t, dst)
	n := 0
	for _, m := range got["Folders/Projects/Alpha"] {
		n += len(m)
	}
	if n != 6 {
		t.Fatalf("Folders/Projects/Alpha holds %d, want 6", n)
	}
	sum = copyRun(t, src, dst, jpath, nil)
	if sum.Copied != 0 {
		t.Fatalf("re-run copied %d", sum.Copied)
	}
}

// The source renumbers a folder (a new UIDVALIDITY: here the folder is
// deleted and made again with the same messages): the re-run copies
// nothing twice and, even with Delete, deletes nothing.
func TestSourceRenumbered(t *testing.T) {
	d := testmail.StartDovecot(t)
	src, dst := d.Config(t, "imaps", "src"), d.Config(t, "imaps", "dst")
	msgs := append(testmail.Gen(30, []string{"Lists"}, 12), oddMessages()[1], oddMessages()[5])
	for i := range msgs {
		msgs[i].Folder = "Lists"
	}
	testmail.Put(t, src, msgs)
	jpath := filepath.Join(t.TempDir(), "j.jsonl")
	copyRun(t, src, dst, jpath, nil)
	c, err := src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before, err := c.Examine("Lists")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	testmail.Put(t, src, msgs)
	c, err = src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	after, err := c.Examine("Lists")
	c.Logout().Wait()
	if err != nil || after.UIDValidity == before.UIDValidity {
		t.Fatalf("UIDVALIDITY %d, was %d (%v)", after.UIDValidity, before.UIDValidity, err)
	}
	sum := copyRun(t, src, dst, jpath, func(o *engine.Options, _ *export.IMAPSource, _ *imports.IMAPSink) { o.Delete = true })
	if sum.Copied != 0 || sum.Deleted != 0 || sum.AlreadyThere != len(msgs) {
		t.Fatalf("after renumbering: copied %d, deleted %d, found %d of %d", sum.Copied, sum.Deleted, sum.AlreadyThere, len(msgs))
	}
	sameView(t, view(t, src), view(t, dst))
}

// --labels folders copies Bridge's Labels/... folders as folders (no label
// keywords); --labels skip leaves labels behind; Starred is \Flagged in
// both.
func TestBridgeLabelModes(t *testing.T) {
	br := testmail.StartBridge(t, 24)
	d := testmail.StartDovecot(t)
	src := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	var want []bridgeExpected
	b, _ := os.ReadFile(filepath.Join(br.Dir, "expected.json"))
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for i, mode := range []engine.LabelMode{engine.LabelsFolders, engine.LabelsSkip} {
		user := []string{"src", "dst"}[i]
		dst := d.Config(t, "imaps", user)
		copyRun(t, src, dst, filepath.Join(t.TempDir(), "j.jsonl"), func(o *engine.Options, s *export.IMAPSource, _ *imports.IMAPSink) {
			o.Labels, s.LabelMode = mode, mode
		})
		got := heldByPMID(t, dst)
		labelled := map[string]int{}
		for _, w := range want {
			for _, l := range w.Labels {
				if l != "Starred" {
					labelled[l]++
				}
			}
			m := got[strings.TrimPrefix(w.Folder, "Folders/")][w.PMID]
			if w.Folder == "All Mail" {
				m = got["Archive"][w.PMID]
			}
			if len(m) != 1 {
				t.Fatalf("%s: %s: %d copies in its folder", mode, w.PMID, len(m))
			}
			if hasFlag(m[0], "Important") || hasFlag(m[0], "Travel") || w.Starred != hasFlag(m[0], `\Flagged`) {
				t.Errorf("%s: %s: flags %v (starred %v)", mode, w.PMID, m[0].Flags, w.Starred)
			}
		}
		for l, n := range labelled {
			copies := 0
			for _, ms := range got["Labels/"+l] {
				copies += len(ms)
			}
			if mode == engine.LabelsFolders && copies != n || mode == engine.LabelsSkip && copies != 0 {
				t.Errorf("%s: Labels/%s holds %d, want %d", mode, l, copies, map[bool]int{true: n}[mode == engine.LabelsFolders])
			}
		}
	}
}

// Messages without Message-ID are known at the target by their header and
// size, which two messages can share (a cron job's daily report: the same
// header, another body). The target already holds one of two such twins
// and no journal knows it: the other is copied, not taken for it (each
// once at the end); with a new journal, both are found there, nothing
// sent again.
func TestNoIDTwins(t *testing.T) {
	d := testmail.StartDovecot(t)
	src, dst := d.Config(t, "imaps", "src"), d.Config(t, "imaps", "dst")
	date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	hdr := "From: cron@example.org\r\nSubject: daily report\r\nDate: Wed, 01 Jan 2025 00:00:00 +0000\r\n\r\n"
	a := testmail.Msg{Folder: "INBOX", Raw: []byte(hdr + "result A\r\n"), Date: date}
	b := testmail.Msg{Folder: "INBOX", Raw: []byte(hdr + "result B\r\n"), Date: date}
	testmail.Put(t, src, []testmail.Msg{a, b})
	testmail.Put(t, dst, []testmail.Msg{b}) // the second twin is there already
	sum := copyRun(t, src, dst, filepath.Join(t.TempDir(), "a.jsonl"), nil)
	if sum.Copied != 1 || sum.AlreadyThere != 1 {
		t.Fatalf("copied %d, already there %d: want the first twin copied, the second found", sum.Copied, sum.AlreadyThere)
	}
	sameView(t, view(t, src), view(t, dst))
	sum = copyRun(t, src, dst, filepath.Join(t.TempDir(), "b.jsonl"), nil)
	if sum.Copied != 0 || sum.AlreadyThere != 2 {
		t.Fatalf("with a new journal: copied %d, already there %d", sum.Copied, sum.AlreadyThere)
	}
	sameView(t, view(t, src), view(t, dst))
}
