package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/testmail"
)

// What a newcomer types wrong first gets a short, precise answer.
func TestCommandTyposAndHelp(t *testing.T) {
	_, e, code := runCmd(t, "exprot")
	if code != 2 || !strings.Contains(e, "unknown command exprot; did you mean export?") || strings.Contains(e, "Accounts:") {
		t.Errorf("exprot: exit %d, %q", code, e)
	}
	_, e, code = runCmd(t, "migarte", "--from", "x")
	if code != 2 || !strings.Contains(e, "did you mean migrate?") {
		t.Errorf("migarte: exit %d, %q", code, e)
	}
	_, e, code = runCmd(t, "frobnicate")
	if code != 2 || strings.Contains(e, "did you mean") || !strings.Contains(e, "Commands: export") {
		t.Errorf("frobnicate: exit %d, %q", code, e)
	}
	for _, args := range [][]string{{"help", "export"}, {"export", "--help"}, {"export", "-h"}, {"export", "--from", "demo", "--help"}} {
		o, e, code := runCmd(t, args...)
		if code != 0 || !strings.Contains(o, "Usage: mailmove export") || !strings.Contains(o, "-mbox-line-endings") || e != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, o, e)
		}
	}
	if o, _, code := runCmd(t, "help", "check"); code != 0 || !strings.Contains(o, "Usage: mailmove check") {
		t.Errorf("help check: %d %q", code, o)
	}
	if _, e, code := runCmd(t, "help", "exprot"); code != 2 || !strings.Contains(e, "did you mean export?") {
		t.Errorf("help exprot: %d %q", code, e)
	}
	if o, _, code := runCmd(t, "help"); code != 0 || !strings.Contains(o, "Accounts:") {
		t.Errorf("help: %d %q", code, o)
	}
	// a bad flag still says what is wrong, on stderr, with exit 2
	if _, e, code := runCmd(t, "check", "--jsno", "x"); code != 2 || !strings.Contains(e, "flag provided but not defined: -jsno") {
		t.Errorf("check --jsno: %d %q", code, e)
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"exprot": "export", "exort": "export", "Export": "export", "improt": "import", "folder": "folders",
		"chekc": "check", "verison": "version", "migrat": "migrate", "ls": "", "sync": "", "bakcup": "backup", "shedule": "schedule",
	} {
		if got := suggest(in); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// Flags after the positional argument work as before it.
func TestFlagsAfterArguments(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo")
	if _, e, code := runCmd(t, "export", "--from", "demo", "--to", "eml", "--out", out); code != 0 {
		t.Fatal(e)
	}
	for _, args := range [][]string{{"check", out, "--json"}, {"check", "--json", out}, {"check", "--json", "--", out}} {
		o, e, code := runCmd(t, args...)
		var res struct {
			Messages int `json:"messages"`
		}
		if code != 0 || json.Unmarshal([]byte(o), &res) != nil || res.Messages != 10 {
			t.Errorf("%v: exit %d, %q %q", args, code, o, e)
		}
	}
	if _, e, code := runCmd(t, "check", out, out); code != 2 || !strings.Contains(e, "Usage: mailmove check") {
		t.Errorf("two archives: exit %d %q", code, e)
	}
	// import --to URL DIR --dry-run: a dry run, nothing appended
	dst := testmail.Mem(t)
	env := []string{"MAILMOVE_TO_PASSWORD=secret"}
	o, e, code := runCmdEnv(t, env, "import", "--to", "imap://alice@"+dst.Addr+"?tls=none", out, "--dry-run", "--journal-dir", t.TempDir())
	if code != 0 || !strings.Contains(o, "TARGET FOLDER") {
		t.Fatalf("import DIR --dry-run: exit %d %q %q", code, o, e)
	}
	for f, m := range messageIDs(t, dst.Addr) {
		if len(m) > 0 {
			t.Fatalf("a dry run appended %d messages into %s", len(m), f)
		}
	}
	// export's flags after a stray argument: the argument is refused, by name
	if _, e, code := runCmd(t, "export", "hunter2", "--from", "demo", "--to", "eml", "--out", out); code != 2 || !strings.Contains(e, `unexpected argument "hunter2"`) {
		t.Errorf("stray argument: exit %d %q", code, e)
	}
}

// quietTLSServer is a TLS server (self-signed) that never greets in IMAP.
func quietTLSServer(t *testing.T) string {
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// Connection mistakes get advice that names the right scheme and flags.
func TestConnectionAdvice(t *testing.T) {
	plain := testmail.Mem(t)
	tlsAddr := quietTLSServer(t)
	cases := []struct {
		args      []string
		want, not string
	}{
		// imaps:// at a plain IMAP port: use imap://, not a certificate story
		{[]string{"folders", "--from", "imaps://alice@" + plain.Addr}, "use imap://alice@" + plain.Addr, "certificate"},
		// an untrusted certificate: the hint names the real flags
		{[]string{"folders", "--from", "imaps://alice@" + tlsAddr}, "--from-ca-file", "--*"},
		{[]string{"import", "--to", "imaps://alice@" + tlsAddr, "--journal-dir", t.TempDir(), "-"}, "--to-ca-file", "--*"},
		{[]string{"folders", "--from", "imaps://alice:pw@" + tlsAddr}, "--from-password-file", "--*"},
	}
	for _, c := range cases {
		cmd := exec.Command(binary(t), c.args...)
		cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret")
		cmd.Stdin = strings.NewReader("From a@b Thu Jan  1 00:00:00 1970\nSubject: x\n\nx\n")
		var e bytes.Buffer
		cmd.Stderr = &e
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(e.String(), c.want) || strings.Contains(e.String(), c.not) {
			t.Errorf("%v: exit %d, want %q and not %q in %q", c.args, code, c.want, c.not, e.String())
		}
	}
}

// A run that cannot connect or log in leaves no --out folder behind, and a
// password file others can read is refused.
func TestFailedLoginCreatesNothing(t *testing.T) {
	srv := testmail.Mem(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("wrong\n"), 0o600)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--from", "imap://alice@" + srv.Addr + "?tls=none", "--from-password-file", pw}, 1, "login to"},
		{[]string{"--from", "imap://alice@127.0.0.1:1?tls=none"}, 1, "connect"},
		{[]string{"--from", "imaps://alice@" + srv.Addr}, 1, "use imap://"},
	}
	for i, c := range cases {
		out := filepath.Join(dir, "out", string(rune('a'+i)))
		_, e, code := runCmd(t, append([]string{"export", "--to", "mbox", "--out", out}, c.args...)...)
		if code != c.code || !strings.Contains(e, c.msg) {
			t.Errorf("%v: exit %d %q", c.args, code, e)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%v: the failed run created %s", c.args, out)
		}
		// --json still says what happened
		o, _, code := runCmd(t, append([]string{"export", "--to", "mbox", "--out", out, "--json"}, c.args...)...)
		var v struct {
			Schema int    `json:"schema"`
			OK     bool   `json:"ok"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal([]byte(o), &v); err != nil || code != c.code || v.Schema != 1 || v.OK || !strings.Contains(v.Error, c.msg) {
			t.Errorf("%v --json: exit %d, %q", c.args, code, o)
		}
	}
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	os.Chmod(pw, 0o644)
	out := filepath.Join(dir, "out", "perm")
	_, e, code := runCmd(t, "export", "--from", "imap://alice@"+srv.Addr+"?tls=none", "--from-password-file", pw, "--to", "mbox", "--out", out)
	if code != 2 || !strings.Contains(e, "chmod 600 "+pw) {
		t.Errorf("a world-readable password file: exit %d %q", code, e)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the refused run created %s", out)
	}
	os.Chmod(pw, 0o600)
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+srv.Addr+"?tls=none", "--from-password-file", pw, "--to", "mbox", "--out", out); code != 0 {
		t.Errorf("after chmod 600: exit %d %q", code, e)
	}
}

// slowGreeting forwards to target, holding the server's greeting back for
// delay, like a far or busy server.
func slowGreeting(t *testing.T, target string, delay time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				time.Sleep(delay)
				s, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(s, c); s.Close() }()
				io.Copy(c, s)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// On a terminal something moves while mailmove connects; off a terminal
// nothing is printed (cron mails only failures).
func TestStatusLineOnTerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("no script(1) to run mailmove on a pseudo-terminal")
	}
	srv := testmail.Mem(t)
	from := "imap://alice@" + slowGreeting(t, srv.Addr, 700*time.Millisecond) + "?tls=none"
	cmd := exec.Command("script", "-qec", binary(t)+" folders --from '"+from+"'", "/dev/null")
	cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=secret")
	o, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, o)
	}
	if !strings.Contains(string(o), "⠋ connecting to") || !strings.Contains(string(o), "waiting for the greeting") || !strings.Contains(string(o), "INBOX") {
		t.Fatalf("no status line on the terminal: %q", o)
	}
	// the line is erased before the listing
	if i, j := strings.LastIndex(string(o), "\r\033[K"), strings.Index(string(o), "FOLDER"); i < 0 || i > j {
		t.Fatalf("the status line was not erased before the output: %q", o)
	}
	// a password prompt on the terminal is not overwritten by the spinner
	// while the user types (here: the answer comes after 600 ms)
	cmd = exec.Command("sh", "-c", "sleep 0.6; echo secret")
	sh := exec.Command("script", "-qec", binary(t)+" folders --from '"+from+"'", "/dev/null")
	var env []string
	for _, v := range os.Environ() {
		if !strings.HasPrefix(v, "MAILMOVE_FROM_PASSWORD=") {
			env = append(env, v)
		}
	}
	sh.Env = env
	sh.Stdin, _ = cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	o, err = sh.CombinedOutput()
	cmd.Wait()
	if err != nil {
		t.Fatalf("%v: %s", err, o)
	}
	i := strings.Index(string(o), "Password for ")
	if i < 0 || !strings.Contains(string(o), "INBOX") {
		t.Fatalf("no prompt, or no listing: %q", o)
	}
	if line, _, _ := strings.Cut(string(o[i:]), "\n"); strings.Contains(line, "\r\033[K") {
		t.Fatalf("the status line wrote over the password prompt: %q", line)
	}
	o2, e, code := runCmd(t, "folders", "--from", from)
	if code != 0 || e != "" || strings.Contains(o2, "connecting") {
		t.Fatalf("off a terminal: exit %d, stderr %q", code, e)
	}
}

// Every verb's --json says the same things the same way, failures too:
// schema, command, ok, error.
func TestJSONFailuresAllVerbs(t *testing.T) {
	down := "imap://alice@127.0.0.1:1?tls=none"
	notArchive := t.TempDir()
	for _, args := range [][]string{
		{"export", "--from", down, "--to", "mbox", "--out", filepath.Join(t.TempDir(), "x")},
		{"folders", "--from", down},
		{"import", "--to", down, "--journal-dir", t.TempDir(), notArchive},
		{"migrate", "--from", down, "--to", down, "--journal-dir", t.TempDir()},
		{"check", notArchive},
	} {
		o, e, code := runCmdEnv(t, []string{"MAILMOVE_FROM_PASSWORD=x", "MAILMOVE_TO_PASSWORD=x"}, append(args, "--json")...)
		var v struct {
			Schema  int    `json:"schema"`
			Command string `json:"command"`
			OK      *bool  `json:"ok"`
			Error   string `json:"error"`
		}
		if err := json.Unmarshal([]byte(o), &v); err != nil || code != 1 || v.Schema != 1 || v.Command != args[0] || v.OK == nil || *v.OK || v.Error == "" {
			t.Errorf("%s --json: exit %d, stdout %q, stderr %q", args[0], code, o, e)
		}
	}
}
