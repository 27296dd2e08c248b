package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/formats/mbox"
	"github.com/mailmove/mailmove/internal/testmail"
)

// testServer is an in-memory IMAP server with user alice.
type testServer struct {
	srv  *account.MemServer
	addr string
}

func startServer(t testing.TB) *testServer {
	srv := testmail.Mem(t)
	return &testServer{srv: srv, addr: srv.Addr}
}

func (ts *testServer) config(t testing.TB, addr string) *account.Config {
	return testmail.MemConfig(t, addr)
}

func (ts *testServer) put(t testing.TB, msgs []testmail.Msg) {
	testmail.Put(t, ts.config(t, ts.addr), msgs)
}

func export(t testing.TB, cfg *account.Config, out string, f archive.Format, conns int) *Summary {
	t.Helper()
	return exportWith(t, out, f, Options{Account: cfg, Connections: conns})
}

// exportWith runs an export into the archive at out with options o.
func exportWith(t testing.TB, out string, f archive.Format, o Options) *Summary {
	t.Helper()
	a, err := archive.Open(out, f, false, "test")
	if err != nil {
		t.Fatal(err)
	}
	o.Archive, o.Log = a, t.Logf
	sum, err := Run(context.Background(), o)
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return sum
}

// archived reads an archive back: for every stored message, its folder, bytes
// (trimmed to the recorded size) and record.
func archived(t testing.TB, out string) map[string][]archive.Record {
	t.Helper()
	a, err := archive.Open(out, "", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	got := map[string][]archive.Record{}
	for _, folder := range a.Folders() {
		recs, err := a.Records(folder)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Alias {
				continue
			}
			b := readStored(t, out, a.Header.Format, r)
			if int64(len(b)) != r.Size {
				t.Fatalf("%s UID %d: %d bytes stored, index says %d", folder, r.UID, len(b), r.Size)
			}
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != r.SHA256 {
				t.Fatalf("%s UID %d: stored bytes do not match the index hash", folder, r.UID)
			}
			got[folder] = append(got[folder], r)
		}
	}
	return got
}

func readStored(t testing.TB, out string, f archive.Format, r archive.Record) []byte {
	t.Helper()
	p := filepath.Join(out, filepath.FromSlash(r.File))
	if f == archive.EML {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	mr := mbox.NewReader(io.NewSectionReader(fh, r.Offset, r.Length))
	mr.ContentLength = false // our own archives are strict mboxrd
	m, err := mr.Next()
	if err != nil {
		t.Fatalf("%s at %d: %v", r.File, r.Offset, err)
	}
	b, err := io.ReadAll(m)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) > r.Size { // a message without final newline gained one
		b = b[:r.Size]
	}
	return b
}

// checkExact checks that the archive holds exactly msgs, byte for byte, with
// flags and dates.
func checkExact(t testing.TB, out string, msgs []testmail.Msg) {
	t.Helper()
	got := archived(t, out)
	want := map[string][]testmail.Msg{}
	for _, m := range msgs {
		want[m.Folder] = append(want[m.Folder], m)
	}
	for folder, ms := range want {
		recs := got[folder]
		if len(recs) != len(ms) {
			t.Fatalf("folder %s: %d messages archived, want %d", folder, len(recs), len(ms))
		}
		sort.Slice(recs, func(i, j int) bool { return recs[i].UID < recs[j].UID })
		for i, m := range ms {
			r := recs[i]
			b := readStored(t, out, formatOf(t, out), r)
			if !bytes.Equal(b, m.Raw) {
				t.Fatalf("folder %s message %d: bytes differ", folder, i)
			}
			if !r.InternalDate.Equal(m.Date) {
				t.Errorf("folder %s message %d: date %v, want %v", folder, i, r.InternalDate, m.Date)
			}
			if fs, ws := normFlags(r.Flags), normFlags(flagStrings(m.Flags)); fs != ws {
				t.Errorf("folder %s message %d: flags %s, want %s", folder, i, fs, ws)
			}
		}
	}
	for folder, recs := range got {
		if len(recs) > 0 && len(want[folder]) == 0 {
			t.Errorf("unexpected folder %s with %d messages", folder, len(recs))
		}
	}
}

func formatOf(t testing.TB, out string) archive.Format {
	b, err := os.ReadFile(filepath.Join(out, ".mailmove", "archive.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`"eml"`)) {
		return archive.EML
	}
	return archive.Mbox
}

func flagStrings(f []imap.Flag) []string {
	var s []string
	for _, x := range f {
		s = append(s, string(x))
	}
	return s
}

func normFlags(f []string) string {
	var s []string
	for _, x := range f {
		s = append(s, strings.ToLower(x))
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

var folders = []string{"INBOX", "Sent", "Archive/2024", "Entwürfe/Übersicht", "R&D"}

func TestExportExactAndIncremental(t *testing.T) {
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			ts := startServer(t)
			msgs := testmail.Gen(120, folders, 1)
			ts.put(t, msgs)
			out := filepath.Join(t.TempDir(), "out")
			cfg := ts.config(t, ts.addr)
			sum := export(t, cfg, out, f, 3)
			if sum.Messages != len(msgs) || len(sum.Failed) != 0 {
				t.Fatalf("summary %+v", sum)
			}
			checkExact(t, out, msgs)

			// nothing new: nothing fetched
			sum = export(t, cfg, out, f, 3)
			if sum.Messages != 0 {
				t.Fatalf("re-run exported %d messages", sum.Messages)
			}
			// new mail: only that is fetched
			more := testmail.Gen(30, folders, 2)
			ts.put(t, more)
			sum = export(t, cfg, out, f, 3)
			if sum.Messages != 30 {
				t.Fatalf("incremental run exported %d messages, want 30", sum.Messages)
			}
			checkExact(t, out, append(append([]testmail.Msg{}, msgs...), more...))
			checkPerms(t, out)
		})
	}
}

func checkPerms(t *testing.T, out string) {
	filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		if fi.IsDir() && perm != 0o700 || !fi.IsDir() && perm != 0o600 {
			t.Errorf("%s has mode %v", p, perm)
		}
		return nil
	})
}

func TestHostileFolderNames(t *testing.T) {
	ts := startServer(t)
	names := []string{"..", ".hidden", "%41", ".mailmove", "x/../../escape", "Ordner mit Leerzeichen"}
	var msgs []testmail.Msg
	for i, n := range names {
		m := testmail.Gen(1, []string{n}, int64(100+i))[0]
		msgs = append(msgs, m)
	}
	ts.put(t, msgs)
	root := t.TempDir()
	out := filepath.Join(root, "out")
	export(t, ts.config(t, ts.addr), out, archive.EML, 1)
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Fatalf("something was written outside the archive: %v", entries)
	}
	checkExact(t, out, msgs)
	// eml folders for the names exist under escaped names
	for _, n := range names {
		segs := strings.Split(n, "/")
		if _, err := os.Stat(filepath.Join(out, archive.RelPath(segs))); err != nil {
			t.Errorf("folder %q: %v", n, err)
		}
	}
}

// cutProxy forwards TCP to target and cuts each of the first n connections
// after limit bytes from the server (or, with limitOf, after the bytes it
// says for the i-th connection, with a RST instead of a FIN if it says so).
type cutProxy struct {
	ln      net.Listener
	target  string
	limit   int64
	limitOf func(i int32) (limit int64, rst bool)
	cuts    int32
	n       int32
	wg      sync.WaitGroup
}

func newCutProxy(t *testing.T, target string, limit int64, n int32) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, limit: limit, n: n}
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
		i := atomic.AddInt32(&p.cuts, 1)
		cut := i <= p.n
		limit, rst := p.limit, false
		if cut && p.limitOf != nil {
			limit, rst = p.limitOf(i)
		}
		go func() { io.Copy(s, c); s.Close() }()
		go func() {
			if cut {
				io.CopyN(c, s, limit)
				if tc, ok := c.(*net.TCPConn); ok && rst {
					tc.SetLinger(0) // Close sends a RST
				}
				c.Close()
				s.Close()
				return
			}
			io.Copy(c, s)
			c.Close()
		}()
	}
}

func TestDroppedConnections(t *testing.T) {
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			ts := startServer(t)
			msgs := testmail.Gen(80, folders[:2], 3)
			ts.put(t, msgs)
			// the first 4 connections die in the middle of the transfer,
			// most likely inside a message literal
			p := newCutProxy(t, ts.addr, 150_000, 4)
			out := filepath.Join(t.TempDir(), "out")
			sum := export(t, ts.config(t, p.ln.Addr().String()), out, f, 1)
			if len(sum.Failed) != 0 {
				t.Fatalf("failures: %+v", sum.Failed)
			}
			checkExact(t, out, msgs)
		})
	}
}

func TestUIDValidityChangeRescan(t *testing.T) {
	ts := startServer(t)
	msgs := testmail.Gen(20, []string{"Box"}, 4)
	ts.put(t, msgs)
	out := filepath.Join(t.TempDir(), "out")
	cfg := ts.config(t, ts.addr)
	export(t, cfg, out, archive.Mbox, 1)

	// The server renumbers the folder: delete and re-create with the same
	// messages plus two new ones.
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Box").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	more := testmail.Gen(2, []string{"Box"}, 5)
	ts.put(t, append(append([]testmail.Msg{}, msgs...), more...))
	sum := export(t, cfg, out, archive.Mbox, 1)
	if sum.Messages != 2 || sum.Duplicates != 20 {
		t.Fatalf("after renumbering: %d new, %d matched; want 2 and 20", sum.Messages, sum.Duplicates)
	}
	got := archived(t, out)
	if len(got["Box"]) != 22 {
		t.Fatalf("archive holds %d messages, want 22", len(got["Box"]))
	}
	// and a further run is a no-op
	if sum := export(t, cfg, out, archive.Mbox, 1); sum.Messages != 0 {
		t.Fatalf("run after rescan exported %d", sum.Messages)
	}
}

func BenchmarkExport(b *testing.B) {
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		b.Run(string(f), func(b *testing.B) {
			ts := startServer(b)
			msgs := testmail.Gen(500, folders, 9)
			ts.put(b, msgs)
			var total int64
			for _, m := range msgs {
				total += int64(len(m.Raw))
			}
			b.SetBytes(total)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out := filepath.Join(b.TempDir(), "out")
				export(b, ts.config(b, ts.addr), out, f, 2)
			}
		})
	}
}

// flakySession refuses to deliver the body of one message.
type flakySession struct {
	imapserver.Session
	bad imap.UID
	mu  sync.Mutex
	sel string
}

func (s *flakySession) Select(name string, o *imap.SelectOptions) (*imap.SelectData, error) {
	s.mu.Lock()
	s.sel = name
	s.mu.Unlock()
	return s.Session.Select(name, o)
}

func (s *flakySession) Fetch(w *imapserver.FetchWriter, set imap.NumSet, o *imap.FetchOptions) error {
	if us, ok := set.(imap.UIDSet); ok && len(o.BodySection) > 0 && s.sel == "INBOX" && us.Contains(s.bad) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: "message temporarily unavailable"}
	}
	return s.Session.Fetch(w, set, o)
}

func TestUndeliverableMessageReported(t *testing.T) {
	srv, err := account.ServeMemoryWrapped("alice", "secret", nil, imap.CapSet{imap.CapIMAP4rev1: {}},
		func(s imapserver.Session) imapserver.Session { return &flakySession{Session: s, bad: 7} })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := &testServer{srv: srv, addr: srv.Addr}
	msgs := testmail.Gen(30, []string{"INBOX", "Sent"}, 21)
	ts.put(t, msgs)
	out := filepath.Join(t.TempDir(), "out")
	sum := export(t, ts.config(t, ts.addr), out, archive.Mbox, 2)
	if len(sum.Failed) != 1 || sum.Failed[0].Folder != "INBOX" || sum.Failed[0].UID != 7 || !strings.Contains(sum.Failed[0].Error, "temporarily unavailable") {
		t.Fatalf("failures: %+v", sum.Failed)
	}
	if sum.Messages != 29 {
		t.Fatalf("%d messages exported, want 29", sum.Messages)
	}
	// the state remembers the failed UID, and the next run tries it again
	a, _ := archive.Open(out, "", false, "test")
	st := a.State("INBOX")
	a.Close()
	if len(st.Failed) != 1 || st.Failed[0] != 7 {
		t.Fatalf("state failed UIDs %v", st.Failed)
	}
	sum = export(t, ts.config(t, ts.addr), out, archive.Mbox, 2)
	if len(sum.Failed) != 1 || sum.Messages != 0 {
		t.Fatalf("second run: %d messages, failures %+v", sum.Messages, sum.Failed)
	}
}

func TestFolderSelection(t *testing.T) {
	ts := startServer(t)
	ts.put(t, testmail.Gen(12, []string{"INBOX", "Archive/2023", "Archive/2024", "Trash", "Lists/Go"}, 31))
	cases := []struct {
		include, exclude []string
		want             []string
	}{
		{nil, nil, []string{"Archive/2023", "Archive/2024", "INBOX", "Lists/Go", "Trash"}},
		{[]string{"Archive"}, nil, []string{"Archive/2023", "Archive/2024"}}, // a plain name selects its subfolders
		{[]string{"Archive/*"}, []string{"*/2023"}, []string{"Archive/2024"}},
		{nil, []string{"Trash", "Lists"}, []string{"Archive/2023", "Archive/2024", "INBOX"}},
	}
	for _, c := range cases {
		out := filepath.Join(t.TempDir(), "out")
		exportWith(t, out, archive.Mbox, Options{Account: ts.config(t, ts.addr), Include: c.include, Exclude: c.exclude})
		var got []string
		for f, recs := range archived(t, out) {
			if len(recs) > 0 {
				got = append(got, f)
			}
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("--folder %v --exclude %v: exported %v, want %v", c.include, c.exclude, got, c.want)
		}
	}
}

func TestRefreshFlags(t *testing.T) {
	ts := startServer(t)
	ts.put(t, testmail.Gen(10, []string{"INBOX"}, 41))
	out := filepath.Join(t.TempDir(), "out")
	cfg := ts.config(t, ts.addr)
	export(t, cfg, out, archive.Mbox, 1)

	// the user reads, stars and tags on the server
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := func(uid imap.UID, op imap.StoreFlagsOp, f imap.Flag) {
		var set imap.UIDSet
		set.AddNum(uid)
		if err := c.Store(set, &imap.StoreFlags{Op: op, Flags: []imap.Flag{f}, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	store(1, imap.StoreFlagsAdd, imap.FlagFlagged)
	store(1, imap.StoreFlagsDel, imap.FlagSeen)
	store(2, imap.StoreFlagsAdd, imap.FlagSeen)
	store(4, imap.StoreFlagsAdd, "$Work")
	c.Close()

	run := func() *Summary { return exportWith(t, out, archive.Mbox, Options{Account: cfg, RefreshFlags: true}) }
	if sum := run(); sum.FlagsUpdated != 3 || sum.Messages != 0 {
		t.Fatalf("flags updated on %d messages (want 3), %d new", sum.FlagsUpdated, sum.Messages)
	}
	got := archived(t, out)["INBOX"]
	flags := map[uint32]string{}
	for _, r := range got {
		flags[r.UID] = normFlags(r.Flags)
	}
	if flags[1] != `$label1 \deleted \flagged` || flags[2] != `\seen` || flags[4] != `$label1 $work` {
		t.Fatalf("flags after refresh: %v", flags)
	}
	if sum := run(); sum.FlagsUpdated != 0 {
		t.Fatalf("second refresh updated %d", sum.FlagsUpdated)
	}
}
