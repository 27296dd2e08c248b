package imports

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

func fixture(name string) string { return filepath.Join(testmail.Root(), "testdata", "import", name) }

func runImport(t *testing.T, o Options) *Summary {
	t.Helper()
	if o.JournalDir == "" {
		o.JournalDir = t.TempDir()
	}
	if o.Log == nil {
		o.Log = t.Logf
	}
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("import %s: %v", o.Source, err)
	}
	return sum
}

// stored is a message as the server holds it.
type stored struct {
	sha   string // of the bytes with CRLF line endings
	flags string
	date  time.Time
	raw   []byte
}

func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func hash(b []byte) string {
	s := sha256.Sum256(crlf(b))
	return hex.EncodeToString(s[:])
}

func normFlags(f []string) string {
	var s []string
	for _, x := range f {
		x = strings.ToLower(x)
		if x != `\recent` {
			s = append(s, x)
		}
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

// contents reads every folder of an account.
func contents(t *testing.T, cfg *account.Config) map[string][]stored {
	t.Helper()
	out := map[string][]stored{}
	for f, msgs := range testmail.Held(t, cfg) {
		for _, m := range msgs {
			var fl []string
			for _, x := range m.Flags {
				fl = append(fl, string(x))
			}
			out[f] = append(out[f], stored{sha: hash(m.Raw), flags: normFlags(fl), date: m.Date, raw: m.Raw})
		}
	}
	return out
}

func find(t *testing.T, msgs []stored, substr string) stored {
	t.Helper()
	for _, m := range msgs {
		if bytes.Contains(m.raw, []byte(substr)) {
			return m
		}
	}
	t.Fatalf("no message with %q", substr)
	return stored{}
}

// setMaildirTimes gives the Maildir fixture's files the arrival times their
// names carry (git does not keep file times; mbsync and Dovecot do).
func setMaildirTimes(t *testing.T) {
	filepath.Walk(fixture("maildir"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasPrefix(fi.Name(), ".") {
			return err
		}
		secs, _, _ := strings.Cut(fi.Name(), ".")
		if n, err := strconv.ParseInt(secs, 10, 64); err == nil {
			os.Chtimes(p, time.Unix(n, 0), time.Unix(n, 0))
		}
		return nil
	})
}

func TestForeignInputs(t *testing.T) {
	setMaildirTimes(t)
	srv := testmail.Mem(t)
	cfg := testmail.MemConfig(t, srv.Addr)
	jdir := t.TempDir()
	imp := func(o Options) *Summary {
		o.Account, o.JournalDir = cfg, jdir
		return runImport(t, o)
	}
	// Python's mailbox module (mboxo, LF), Status/X-Status flags.
	sum := imp(Options{Source: fixture("python-mboxo.mbox"), Folder: "Python"})
	// mboxrd with quoted From lines, CRLF, X-Keywords.
	imp(Options{Source: fixture("mboxrd-crlf.mbox"), Folder: "Rd"})
	// mboxcl2 as Dovecot writes it: Content-Length, From lines not quoted.
	imp(Options{Source: fixture("dovecot-mboxcl2.mbox"), Folder: "Cl2"})
	// Gmail Takeout, labels as keywords, then as folders into another account.
	imp(Options{Source: fixture("takeout.mbox"), Prefix: "Gmail"})
	// Tuta's flat export (no Message-ID) into one folder.
	imp(Options{Source: fixture("TutaExport-2026-11-20"), Folder: "Archive/Tuta"})
	// Maildir++ and a Thunderbird profile tree.
	imp(Options{Source: fixture("maildir"), Prefix: "Maildir"})
	imp(Options{Source: fixture("thunderbird/Local Folders"), Prefix: "TB"})
	if len(sum.Failed) != 0 {
		t.Fatalf("failures: %v", sum.Failed)
	}

	got := contents(t, cfg)
	counts := map[string]int{}
	for f, ms := range got {
		counts[f] = len(ms)
	}
	want := map[string]int{"Python": 3, "Rd": 2, "Cl2": 2, "Gmail/INBOX": 2, "Gmail/Sent": 1, "Gmail/Projects, 2024": 1,
		"Archive/Tuta": 3, "Maildir/INBOX": 3, "Maildir/Sent": 1, "Maildir/Lists/Go": 1, "TB/INBOX": 1, "TB/INBOX/Receipts": 1}
	for f, n := range want {
		if counts[f] != n {
			t.Errorf("folder %s: %d messages, want %d (all: %v)", f, counts[f], n, counts)
		}
	}
	py := find(t, got["Python"], "python 1")
	if py.flags != `\answered \seen` {
		t.Errorf("python 1 flags %q", py.flags)
	}
	if !bytes.Contains(py.raw, []byte("\r\nFrom the middle")) {
		t.Errorf("mboxo From line not unquoted: %q", py.raw)
	}
	rd := find(t, got["Rd"], "Subject: rd\r\n")
	if !bytes.Contains(rd.raw, []byte("\r\nFrom here\r\n>From there\r\n")) || rd.flags != `$work \flagged \seen` {
		t.Errorf("mboxrd: flags %q, bytes %q", rd.flags, rd.raw)
	}
	if !rd.date.Equal(time.Date(2025, 1, 6, 8, 15, 0, 0, time.UTC)) {
		t.Errorf("mboxrd INTERNALDATE %v, want the From_ line's", rd.date)
	}
	cl := find(t, got["Cl2"], "cl2 one")
	if !bytes.Contains(cl.raw, []byte("\r\n\r\nFrom the body, not quoted\r\nsecond line\r\n")) {
		t.Errorf("mboxcl2 body %q", cl.raw)
	}
	g3 := find(t, got["Gmail/Projects, 2024"], "takeout 3")
	if g3.flags != "travel" {
		t.Errorf("takeout 3 (Unread, labels Projects, 2024 and Travel): flags %q", g3.flags)
	}
	g5 := find(t, got["Gmail/INBOX"], "takeout 5")
	if g5.flags != `\flagged` {
		t.Errorf("takeout 5 (Starred, Unread): flags %q", g5.flags)
	}
	m2 := find(t, got["Maildir/INBOX"], "maildir 2")
	if m2.flags != `\answered \flagged \seen` || !m2.date.Equal(time.Unix(1736500001, 0)) {
		t.Errorf("maildir 2: flags %q date %v", m2.flags, m2.date)
	}
	if rc := find(t, got["TB/INBOX/Receipts"], "tb-receipts"); rc.flags != `\flagged \seen` {
		t.Errorf("thunderbird flags %q", rc.flags)
	}

	// Everything again: nothing is appended twice, journal or not.
	for _, src := range []string{"python-mboxo.mbox", "takeout.mbox", "TutaExport-2026-11-20", "maildir"} {
		o := Options{Source: fixture(src), Account: cfg, JournalDir: t.TempDir()} // a fresh journal: the server is asked
		switch src {
		case "python-mboxo.mbox":
			o.Folder = "Python"
		case "TutaExport-2026-11-20":
			o.Folder = "Archive/Tuta"
		case "takeout.mbox":
			o.Prefix = "Gmail"
		default:
			o.Prefix = "Maildir"
		}
		if s := runImport(t, o); s.Appended != 0 {
			t.Errorf("%s imported again: %d appended", src, s.Appended)
		}
	}

	// Takeout labels as folders: one more copy per user label.
	srv2 := testmail.Mem(t)
	cfg2 := testmail.MemConfig(t, srv2.Addr)
	runImport(t, Options{Account: cfg2, Source: fixture("takeout.mbox"), LabelsAsFolders: true})
	got2 := contents(t, cfg2)
	if len(got2["Travel"]) != 1 || len(got2["Projects, 2024"]) != 1 || len(got2["INBOX"]) != 2 {
		t.Errorf("takeout with labels as folders: %v", keys(got2))
	}
}

func keys(m map[string][]stored) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

func TestBadInput(t *testing.T) {
	srv := testmail.Mem(t)
	cfg := testmail.MemConfig(t, srv.Addr)
	sum := runImport(t, Options{Account: cfg, Source: fixture("not-mail.txt")})
	if len(sum.Failed) != 1 || !strings.Contains(sum.Failed[0].Error, "not an mbox") {
		t.Fatalf("failures %v", sum.Failed)
	}
	sum = runImport(t, Options{Account: cfg, Source: fixture("not-mail.txt"), DryRun: true})
	if sum.Appended != 0 {
		t.Fatal("dry run appended")
	}
}

func TestDryRun(t *testing.T) {
	srv := testmail.Mem(t)
	cfg := testmail.MemConfig(t, srv.Addr)
	sum := runImport(t, Options{Account: cfg, Source: fixture("maildir"), DryRun: true})
	if sum.Appended != 0 || len(sum.Plan) != 3 {
		t.Fatalf("plan %+v", sum.Plan)
	}
	for _, p := range sum.Plan {
		if p.Folder != "INBOX" && !p.Create {
			t.Errorf("%s: not marked to be created", p.Folder)
		}
	}
	if got := contents(t, cfg); len(got) != 0 {
		t.Fatalf("dry run changed the account: %v", keys(got))
	}
}

// exportTo exports an account into a new archive.
func exportTo(t *testing.T, cfg *account.Config, f archive.Format) string {
	out := filepath.Join(t.TempDir(), "archive")
	a, err := archive.Open(out, f, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := export.Run(context.Background(), export.Options{Account: cfg, Archive: a}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	return out
}

// sameMail compares two accounts folder by folder: the same messages (by
// hash after CRLF normalisation), flags and INTERNALDATE.
func sameMail(t *testing.T, src, dst map[string][]stored, rename map[string]string) {
	t.Helper()
	for f, ms := range src {
		df := f
		if r, ok := rename[f]; ok {
			df = r
		}
		want := describe(ms)
		got := describe(dst[df])
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("folder %s -> %s: %d messages, want %d; first difference:\n%s", f, df, len(got), len(want), firstDiff(want, got))
		}
	}
}

func describe(ms []stored) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s %s %s", m.sha[:16], m.date.UTC().Format(time.RFC3339), m.flags))
	}
	sort.Strings(out)
	return out
}

func firstDiff(a, b []string) string {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			g := "(none)"
			if i < len(b) {
				g = b[i]
			}
			return "want " + a[i] + "\n got " + g
		}
	}
	if len(b) > len(a) {
		return "extra " + b[len(a)]
	}
	return ""
}

func TestRoundTripDovecot(t *testing.T) {
	d := testmail.StartDovecot(t)
	msgs := testmail.Corpus()
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, msgs)
	want := contents(t, src)
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			out := exportTo(t, src, f)
			dst := d.Config(t, "imaps", "dst")
			// a fresh target each time: clear dst
			clearAccount(t, dst)
			jdir := t.TempDir()
			sum := runImport(t, Options{Account: dst, Source: out, JournalDir: jdir})
			if len(sum.Failed) != 0 || sum.Appended != len(msgs) {
				t.Fatalf("appended %d of %d; failures %v", sum.Appended, len(msgs), sum.Failed)
			}
			sameMail(t, want, contents(t, dst), nil)
			// again, with and without the journal: nothing appended
			if s := runImport(t, Options{Account: dst, Source: out, JournalDir: jdir}); s.Appended != 0 {
				t.Fatalf("re-run appended %d", s.Appended)
			}
			if s := runImport(t, Options{Account: dst, Source: out, JournalDir: t.TempDir()}); s.Appended != 0 {
				t.Fatalf("re-run without journal appended %d", s.Appended)
			}
		})
	}
}

// clearAccount deletes every folder but INBOX and empties INBOX.
func clearAccount(t *testing.T, cfg *account.Config) {
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	folders, _ := c.ListFolders()
	sort.Slice(folders, func(i, j int) bool { return len(folders[i].Name) > len(folders[j].Name) })
	for _, f := range folders {
		if f.Name != "INBOX" {
			c.Delete(f.Name).Wait()
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err == nil {
		var all imap.UIDSet
		all.AddRange(1, 0)
		c.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close()
		c.Expunge().Close()
	}
}

func TestBadMessages(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("zip.eml", []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip"))
	write("nul.eml", []byte("From: a@example.org\r\nSubject: nul\r\n\r\na\x00b\r\n"))
	write("noheader.eml", []byte("just some text\r\nwithout a header\r\n"))
	write("good.eml", []byte("From: a@example.org\r\nSubject: good\r\nDate: Mon, 06 Jan 2025 09:15:00 +0100\r\n\r\nfine\r\n"))
	long := append([]byte("From: a@example.org\r\nSubject: long line\r\n\r\n"), bytes.Repeat([]byte("x"), 2<<20)...)
	write("longline.eml", append(long, "\r\n"...))
	// a truncated mbox: its last message ends where the file ends
	write("truncated.mbox", []byte("From a Mon Jan  6 08:15:00 2025\nFrom: a@example.org\nSubject: one\n\nbody\n\nFrom b Mon Jan  6 08:16:00 2025\nFrom: b@example.org\nSubject: cut\n\nthe end is mis"))
	srv := testmail.Mem(t)
	cfg := testmail.MemConfig(t, srv.Addr)
	sum := runImport(t, Options{Account: cfg, Source: dir})
	errs := map[string]string{}
	for _, f := range sum.Failed {
		errs[filepath.Base(f.Source)] = f.Error
	}
	for name, want := range map[string]string{"zip.eml": "zip archive", "nul.eml": "NUL"} {
		if !strings.Contains(errs[name], want) {
			t.Errorf("%s: error %q, want %q", name, errs[name], want)
		}
	}
	// a message without a header goes to the server as it is: this one takes it
	if sum.Appended != 5 || len(sum.Failed) != 2 {
		t.Fatalf("appended %d (want good, no header, long line and the 2 of the truncated mbox), failures %v", sum.Appended, sum.Failed)
	}
	// zip.eml is a file that is not mail (reported, not a message); nul.eml a message refused
	if sum.Seen != 6 || sum.Refused != 1 || sum.Skipped != 0 || sum.NotDone != 0 {
		t.Fatalf("tally: %s", sum.Tally())
	}
}

// quotaSession refuses APPENDs once the account holds limit messages.
type quotaSession struct {
	imapserver.Session
	n     *atomic.Int32
	limit *atomic.Int32
}

func (s quotaSession) Append(mailbox string, r imap.LiteralReader, o *imap.AppendOptions) (*imap.AppendData, error) {
	if s.n.Load() >= s.limit.Load() {
		io.Copy(io.Discard, r)
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded (mailbox for user is full)"}
	}
	s.n.Add(1)
	return s.Session.Append(mailbox, r, o)
}

func TestOverQuotaStopsAndResumes(t *testing.T) {
	var n, limit atomic.Int32
	limit.Store(30)
	srv, err := account.ServeMemoryWrapped("alice", "secret", nil, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
		func(s imapserver.Session) imapserver.Session { return quotaSession{s, &n, &limit} })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(80, []string{"INBOX", "Sent"}, 8))
	out := exportTo(t, testmail.MemConfig(t, src.Addr), archive.EML)
	cfg := testmail.MemConfig(t, srv.Addr)
	jdir := t.TempDir()
	_, err = Run(context.Background(), Options{Account: cfg, Source: out, JournalDir: jdir, Connections: 1})
	if !errors.Is(err, ErrOverQuota) || !strings.Contains(err.Error(), "run the same import again") {
		t.Fatalf("want an over-quota stop, got %v", err)
	}
	limit.Store(1000) // the user made room
	sum := runImport(t, Options{Account: cfg, Source: out, JournalDir: jdir})
	if sum.Appended != 50 || len(sum.Failed) != 0 {
		t.Fatalf("after making room: appended %d, failures %v", sum.Appended, sum.Failed)
	}
	if n.Load() != 80 {
		t.Fatalf("the account holds %d messages, want 80", n.Load())
	}
}

// A MULTIAPPEND batch Dovecot refuses (all or nothing) is sent again one by
// one: only the message it cannot take fails.
func TestBatchRefusedThenOneByOne(t *testing.T) {
	d := testmail.StartDovecot(t)
	var b strings.Builder
	for i := 0; i < 10; i++ {
		fmt.Fprintf(&b, "From x@example.org Mon Jan  6 08:15:00 2025\nFrom: x@example.org\nSubject: batch %d\nMessage-ID: <batch%d@example.org>\n", i, i)
		if i == 4 {
			b.WriteString("X-Keywords: " + strings.Repeat("K", 60) + "\n") // Dovecot: "Keyword length too long"
		}
		b.WriteString("\nbody\n\n")
	}
	src := filepath.Join(t.TempDir(), "batch.mbox")
	os.WriteFile(src, []byte(b.String()), 0o600)
	sum := runImport(t, Options{Account: d.Config(t, "imaps", "dst"), Source: src, Folder: "Batch"})
	if sum.Appended != 9 || len(sum.Failed) != 1 || !strings.Contains(sum.Failed[0].Error, "Keyword length too long") {
		t.Fatalf("appended %d, failures %v", sum.Appended, sum.Failed)
	}
	if got := contents(t, d.Config(t, "imaps", "dst")); len(got["Batch"]) != 9 {
		t.Fatalf("Batch holds %d", len(got["Batch"]))
	}
}
