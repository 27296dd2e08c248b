// Package testmail gives mailmove's tests their mail servers and corpora:
// go-imap's in-memory server, a private Dovecot on loopback
// (testdata/dovecot), and the Proton Mail Bridge stand-in
// (testdata/bridgestub), with generated messages to put on them.
//
// Dovecot and the stand-in are skipped when missing, unless
// MAILMOVE_REQUIRE_INTEROP is set (CI sets it): then a missing one fails.
package testmail

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/account"
)

// Msg is a message to put on a test server.
type Msg struct {
	Folder string
	Raw    []byte
	Flags  []imap.Flag
	Date   time.Time
}

// Gen makes n messages spread over folders: From and >From body lines,
// some without a final newline, some of 200 KB, \Seen, \Deleted and a
// keyword on some.
func Gen(n int, folders []string, seed int64) []Msg {
	r := rand.New(rand.NewSource(seed))
	var out []Msg
	for i := 0; i < n; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "Return-Path: <s%d@example.org>\r\nFrom: S <s%d@example.org>\r\nSubject: message %d\r\nMessage-ID: <m%d.%d@example.org>\r\nDate: Mon, 06 Jan 2025 09:15:00 +0100\r\n\r\n", i, i, i, seed, i)
		b.WriteString("From the start of a body line\r\n>From quoted\r\n")
		lines := r.Intn(200)
		if i%17 == 0 {
			lines = 3000 // ~200 KB
		}
		for l := 0; l < lines; l++ {
			fmt.Fprintf(&b, "line %d of message %d: %x\r\n", l, i, r.Int63())
		}
		if i%5 == 0 {
			b.WriteString("no final newline")
		}
		flags := []imap.Flag{}
		if i%2 == 0 {
			flags = append(flags, imap.FlagSeen)
		}
		if i%7 == 0 {
			flags = append(flags, imap.FlagDeleted)
		}
		if i%3 == 0 {
			flags = append(flags, "$Label1")
		}
		out = append(out, Msg{
			Folder: folders[i%len(folders)],
			Raw:    []byte(b.String()),
			Flags:  flags,
			Date:   time.Date(2020, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600)).Add(time.Duration(i) * time.Hour),
		})
	}
	return out
}

// Corpus is the interop corpus: nested and non-ASCII folders, duplicates
// (the same bytes twice in one folder and once elsewhere), a 6 MB
// attachment and every flag.
func Corpus() []Msg {
	msgs := Gen(150, []string{"INBOX", "Sent", "Trash", "Archiv/2024/Q1", "Entwürfe/Übersicht", "日本語", "R&D"}, 11)
	msgs[1].Flags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, "$Forwarded", "$Junk", "Custom_Keyword"}
	msgs = append(msgs, Msg{Folder: msgs[2].Folder, Raw: msgs[2].Raw, Date: msgs[2].Date})
	msgs = append(msgs, Msg{Folder: "Sent", Raw: msgs[3].Raw, Flags: msgs[3].Flags, Date: msgs[3].Date})
	var b strings.Builder
	b.WriteString("From: big@example.org\r\nSubject: big\r\nDate: Sat, 03 Feb 2024 04:05:06 +0000\r\nMessage-ID: <big@example.org>\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJD", 19) + "\r\n"
	for b.Len() < 6<<20 {
		b.WriteString(line)
	}
	b.WriteString("--x--\r\n")
	msgs = append(msgs, Msg{Folder: "Archiv/2024/Q1", Raw: []byte(b.String()), Flags: []imap.Flag{imap.FlagSeen}, Date: time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)})
	return msgs
}

// Put appends msgs to the account, creating folders ("/" paths).
func Put(t testing.TB, cfg *account.Config, msgs []Msg) {
	t.Helper()
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	made := map[string]bool{"INBOX": true}
	for _, m := range msgs {
		segs := strings.Split(m.Folder, "/")
		for i := range segs {
			p := strings.Join(segs[:i+1], "/")
			if !made[p] {
				c.Create(p, nil).Wait()
				made[p] = true
			}
		}
		ap := c.Append(m.Folder, int64(len(m.Raw)), &imap.AppendOptions{Flags: m.Flags, Time: m.Date})
		ap.Write(m.Raw)
		ap.Close()
		if _, err := ap.Wait(); err != nil {
			t.Fatalf("APPEND to %s: %v", m.Folder, err)
		}
	}
}

// Mem starts go-imap's in-memory server with user alice / secret.
func Mem(t testing.TB) *account.MemServer {
	t.Helper()
	srv, err := account.ServeMemory("alice", "secret", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// MemConfig is the account of alice on an in-memory server at addr.
func MemConfig(t testing.TB, addr string) *account.Config {
	t.Helper()
	u, err := account.ParseURL("imap://alice@" + addr + "?tls=none")
	if err != nil {
		t.Fatal(err)
	}
	return &account.Config{URL: u, Password: passwordFile(t, "secret"), IdleTimeout: 5 * time.Second}
}

func passwordFile(t testing.TB, pw string) account.PasswordSource {
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return account.PasswordSource{File: p}
}

// Root is the repository's root folder.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// NeedTool returns the path of a program a test needs (pkg is the Debian
// package that has it); without it the test is skipped, or fails under
// MAILMOVE_REQUIRE_INTEROP (what CI sets).
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		requireOrSkip(t, "%s is not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// RequireOrSkip skips the test with the message, or fails it under
// MAILMOVE_REQUIRE_INTEROP (what CI sets).
func RequireOrSkip(t testing.TB, format string, a ...any) {
	t.Helper()
	requireOrSkip(t, format, a...)
}

func requireOrSkip(t testing.TB, format string, a ...any) {
	t.Helper()
	if os.Getenv("MAILMOVE_REQUIRE_INTEROP") != "" {
		t.Fatalf(format, a...)
	}
	t.Skipf(format, a...)
}

// Dovecot is a private Dovecot started for a test, with users src and dst
// (password pw).
type Dovecot struct {
	Dir               string
	IMAPAddr, TLSAddr string
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// StartDovecot starts Dovecot (testdata/dovecot) on two free loopback ports.
func StartDovecot(t testing.TB) *Dovecot {
	t.Helper()
	return StartDovecotMail(t, "")
}

// StartDovecotMail is StartDovecot with another mail_location (empty: the
// configuration's Maildir++), e.g. "maildir:~/Maildir:LAYOUT=fs" or
// "mbox:~/mail:INBOX=~/mail/inbox". The users' mail is under
// Dir/home/USER.
func StartDovecotMail(t testing.TB, mailLocation string) *Dovecot {
	t.Helper()
	if _, err := exec.LookPath("dovecot"); err != nil {
		requireOrSkip(t, "dovecot is not installed (apt-get install dovecot-imapd)")
	}
	dir, err := os.MkdirTemp("", "mailmove-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := freePort(t), freePort(t)
	out, err := exec.Command("bash", filepath.Join(Root(), "testdata", "dovecot", "start.sh"), dir, fmt.Sprint(p1), fmt.Sprint(p2), mailLocation).CombinedOutput()
	if err != nil {
		t.Fatalf("starting dovecot: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "run", "master.pid")); err == nil {
			exec.Command("kill", strings.TrimSpace(string(b))).Run()
			time.Sleep(200 * time.Millisecond)
		}
		os.RemoveAll(dir)
	})
	return &Dovecot{Dir: dir, IMAPAddr: fmt.Sprintf("127.0.0.1:%d", p1), TLSAddr: fmt.Sprintf("127.0.0.1:%d", p2)}
}

// Config is the account of user over scheme ("imaps" or "imap", STARTTLS),
// trusting the test certificate.
func (d *Dovecot) Config(t testing.TB, scheme, user string) *account.Config {
	addr := d.TLSAddr
	if scheme == "imap" {
		addr = d.IMAPAddr
	}
	u, err := account.ParseURL(scheme + "://" + user + "@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	return &account.Config{URL: u, CAFile: filepath.Join(d.Dir, "cert.pem"), Password: passwordFile(t, "pw")}
}

var (
	stubOnce sync.Once
	stubBin  string
	stubErr  error
	stubOut  []byte
)

// Bridge is a running Proton Mail Bridge stand-in.
type Bridge struct {
	Dir, Addr string
	Proc      *os.Process
}

// BridgePassword is the stand-in's Bridge password.
const BridgePassword = "bridgepass1234567890ab"

// StartBridge builds (once) and starts testdata/bridgestub with n messages.
func StartBridge(t testing.TB, n int) *Bridge {
	t.Helper()
	stubOnce.Do(func() {
		d, err := os.MkdirTemp("", "mailmove-bridgestub-")
		if err != nil {
			stubErr = err
			return
		}
		stubBin = filepath.Join(d, "bridgestub")
		cmd := exec.Command("go", "build", "-o", stubBin, ".")
		cmd.Dir = filepath.Join(Root(), "testdata", "bridgestub")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		stubOut, stubErr = cmd.CombinedOutput()
	})
	if stubErr != nil {
		requireOrSkip(t, "cannot build the Bridge stand-in (needs cgo and the module proxy): %v\n%s", stubErr, stubOut)
	}
	dir := t.TempDir()
	cmd := exec.Command(stubBin, "-dir", dir, "-messages", fmt.Sprint(n))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 300; i++ {
		if b, err := os.ReadFile(filepath.Join(dir, "addr")); err == nil && len(b) > 0 {
			return &Bridge{Dir: dir, Addr: string(b), Proc: cmd.Process}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the Bridge stand-in did not start")
	return nil
}

// Config is the stand-in's account under url ("bridge://me@proton.test@ADDR").
func (b *Bridge) Config(t testing.TB, url string) *account.Config {
	u, err := account.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return &account.Config{URL: u, CAFile: filepath.Join(b.Dir, "cert.pem"), Password: passwordFile(t, BridgePassword)}
}

// strictAppend refuses an APPEND whose literal ended early. imapmemserver
// alone stores the truncated message when a client disconnects in the
// middle of an APPEND (its literal reader ends quietly), which no real
// server does.
type strictAppend struct {
	imapserver.Session
}

type sizedReader struct {
	*bytes.Reader
	size int64
}

func (r sizedReader) Size() int64 { return r.size }

func (s strictAppend) Append(mailbox string, r imap.LiteralReader, o *imap.AppendOptions) (*imap.AppendData, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != r.Size() {
		return nil, fmt.Errorf("literal cut short: %d of %d bytes", len(b), r.Size())
	}
	return s.Session.Append(mailbox, sizedReader{bytes.NewReader(b), int64(len(b))}, o)
}

// MemStrict is Mem with APPENDs that are cut short refused, as a real
// server does. It speaks IMAP4rev1 only (the wrapper hides rev2 extras).
func MemStrict(t testing.TB) *account.MemServer {
	t.Helper()
	srv, err := account.ServeMemoryWrapped("alice", "secret", nil, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
		func(s imapserver.Session) imapserver.Session { return strictAppend{s} })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// Held returns every message an account holds, by folder path: bytes,
// flags (without \Recent) and INTERNALDATE.
func Held(t testing.TB, cfg *account.Config) map[string][]Msg {
	t.Helper()
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	folders, err := c.ListFolders()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]Msg{}
	for _, f := range folders {
		if !f.Selectable() {
			continue
		}
		sel, err := c.Examine(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if sel.NumMessages == 0 {
			continue
		}
		var all imap.UIDSet
		all.AddRange(1, 0)
		msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			held := Msg{Folder: f.Path(), Date: m.InternalDate}
			for _, bs := range m.BodySection {
				held.Raw = bs.Bytes
			}
			for _, x := range m.Flags {
				if !strings.EqualFold(string(x), `\Recent`) {
					held.Flags = append(held.Flags, x)
				}
			}
			out[f.Path()] = append(out[f.Path()], held)
		}
	}
	return out
}
