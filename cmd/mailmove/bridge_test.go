package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// bridgeExpected is the stand-in's expected.json: every Proton message and
// its folders.
type bridgeExpected struct {
	PMID   string   `json:"pm_id"`
	Folder string   `json:"folder"`
	Also   []string `json:"also"`
}

func startBridge(t *testing.T) (*testmail.Bridge, []bridgeExpected, []string) {
	t.Helper()
	br := testmail.StartBridge(t, 40)
	var want []bridgeExpected
	b, _ := os.ReadFile(filepath.Join(br.Dir, "expected.json"))
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	env := []string{"MAILMOVE_FROM_PASSWORD=" + testmail.BridgePassword}
	return br, want, env
}

// bridgePlaced checks that the archive at out holds every Proton message in
// each of its folders, once, and nothing else (the message in no folder in
// All Mail).
func bridgePlaced(t *testing.T, out string, want []bridgeExpected) {
	t.Helper()
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	got := map[string][]string{}
	for _, f := range a.Folders() {
		recs, err := a.Records(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !r.Alias {
				got[f] = append(got[f], r.PMInternalID)
			}
		}
		sort.Strings(got[f])
	}
	exp := map[string][]string{}
	for _, w := range want {
		for _, f := range append([]string{w.Folder}, w.Also...) {
			exp[f] = append(exp[f], w.PMID)
		}
	}
	for f := range exp {
		sort.Strings(exp[f])
	}
	for f := range got {
		if len(got[f]) == 0 {
			delete(got, f)
		}
	}
	for f, ids := range exp {
		if strings.Join(got[f], " ") != strings.Join(ids, " ") {
			t.Errorf("%s holds %v, want %v", f, got[f], ids)
		}
	}
	for f, ids := range got {
		if _, ok := exp[f]; !ok {
			t.Errorf("unexpected folder %s holds %v", f, ids)
		}
	}
}

// TestBridgeCounts: folders, export and check state the same numbers on
// the same account, and folders lists in a stable order.
func TestBridgeCounts(t *testing.T) {
	br, want, env := startBridge(t)
	from := []string{"--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem")}
	type row struct {
		Folder   string `json:"folder"`
		Archive  string `json:"archive_folder"`
		Messages int    `json:"messages"`
		Exported int    `json:"exported"`
	}
	folders := func(extra ...string) []row {
		t.Helper()
		stdout, e, code := runCmdEnv(t, env, append(append([]string{"folders", "--json"}, from...), extra...)...)
		if code != 0 {
			t.Fatalf("folders: %d %s", code, e)
		}
		var v struct {
			Folders []row `json:"folders"`
		}
		if err := json.Unmarshal([]byte(stdout), &v); err != nil {
			t.Fatalf("folders --json: %v: %s", err, stdout)
		}
		return v.Folders
	}
	rows := folders()
	var names []string
	for _, r := range rows {
		names = append(names, r.Folder)
	}
	if names[0] != "INBOX" || !slices.IsSorted(names[1:]) {
		t.Errorf("folders not in order (INBOX, then by name): %v", names)
	}
	for i := 0; i < 3; i++ {
		var again []string
		for _, r := range folders() {
			again = append(again, r.Folder)
		}
		if strings.Join(again, "|") != strings.Join(names, "|") {
			t.Fatalf("folders changed order: %v, then %v", names, again)
		}
	}
	nAlso := 0
	for _, w := range want {
		nAlso += len(w.Also)
	}
	for _, tc := range []struct {
		name  string
		extra []string
	}{{"all", nil}, {"exclude-Spam", []string{"--exclude", "Spam"}}} {
		t.Run(tc.name, func(t *testing.T) {
			rows := folders(tc.extra...)
			exported := 0
			for _, r := range rows {
				exported += r.Exported
			}
			out := filepath.Join(t.TempDir(), "a")
			stdout, e, code := runCmdEnv(t, env, append(append([]string{"export", "--to", "mbox", "--out", out, "--json"}, from...), tc.extra...)...)
			if code != 3 { // the stand-in serves one message Bridge could not decrypt
				t.Fatalf("export: exit %d: %s", code, e)
			}
			var ex struct {
				Folders, Messages, Duplicates int
				AllMail                       int `json:"all_mail_only"`
				Excluded                      int `json:"excluded"`
			}
			if err := json.Unmarshal([]byte(stdout), &ex); err != nil {
				t.Fatal(err)
			}
			stdout, e, code = runCmd(t, "check", "--json", out)
			if code != 0 {
				t.Fatalf("check: %d %s", code, e)
			}
			var ck struct{ Folders, Messages int }
			if err := json.Unmarshal([]byte(stdout), &ck); err != nil {
				t.Fatal(err)
			}
			t.Logf("folders: %d folders, %d to export; export: %d folders, %d messages (%d in no folder, %d excluded); check: %d folders, %d messages",
				len(rows), exported, ex.Folders, ex.Messages, ex.AllMail, ex.Excluded, ck.Folders, ck.Messages)
			if len(rows) != ex.Folders || ex.Folders != ck.Folders || exported != ex.Messages || ex.Messages != ck.Messages {
				t.Errorf("the counts do not agree")
			}
			if ex.Duplicates != 0 || ex.AllMail != 1 {
				t.Errorf("first export: %d already archived, %d in no folder; want 0 and 1", ex.Duplicates, ex.AllMail)
			}
			if tc.extra == nil && ex.Messages != len(want)+nAlso {
				t.Errorf("%d messages exported, want %d (%d messages, %d of them in two folders)", ex.Messages, len(want)+nAlso, len(want), nAlso)
			}
			if tc.extra != nil && ex.Excluded == 0 {
				t.Errorf("nothing reported excluded")
			}
		})
	}
}

// stallProxy forwards to target; once the client has sent trigger, the
// server's answers on that connection trickle (a few hundred bytes every
// 20 ms) and seen is closed.
func stallProxy(t *testing.T, target, trigger string) (addr string, seen <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			var mu sync.Mutex
			slow := false
			go func() {
				buf := make([]byte, 4096)
				var tail []byte
				for {
					n, err := c.Read(buf)
					if n > 0 {
						tail = append(tail, buf[:n]...)
						if bytes.Contains(tail, []byte(trigger)) {
							mu.Lock()
							slow = true
							mu.Unlock()
							once.Do(func() { close(ch) })
						}
						if len(tail) > 256 {
							tail = tail[len(tail)-256:]
						}
						s.Write(buf[:n])
					}
					if err != nil {
						s.Close()
						return
					}
				}
			}()
			go func() {
				buf := make([]byte, 300)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						mu.Lock()
						sl := slow
						mu.Unlock()
						if sl {
							time.Sleep(20 * time.Millisecond)
						}
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// TestBridgeAllMailInterrupted: Ctrl-C or kill -9 while the export looks
// for the messages of All Mail that are in no folder; the next run still
// finds them. Every message once in each of its folders.
func TestBridgeAllMailInterrupted(t *testing.T) {
	br, want, env := startBridge(t)
	for _, sig := range []os.Signal{os.Interrupt, os.Kill} {
		for _, delay := range []time.Duration{0, 300 * time.Millisecond} {
			// plaintext on loopback, so that the proxy sees the commands
			proxy, seen := stallProxy(t, br.Addr, `EXAMINE "All Mail"`)
			url := "bridge://me@proton.test@" + proxy + "?tls=none"
			out := filepath.Join(t.TempDir(), "a")
			cmd := exec.Command(binary(t), "export", "--from", url, "--to", "eml", "--out", out, "--connections", "1")
			cmd.Env = append(append(os.Environ(), "XDG_STATE_HOME="+t.TempDir()), env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-seen:
			case err := <-done:
				t.Fatalf("the export ended before the All Mail pass: %v: %s", err, stderr.String())
			case <-time.After(30 * time.Second):
				t.Fatal("no All Mail pass")
			}
			time.Sleep(delay)
			cmd.Process.Signal(sig)
			if err := <-done; err == nil {
				t.Fatalf("%v after %v: the export finished before the signal (slow the pass down more)", sig, delay)
			}
			if a, err := archive.OpenReadOnly(out); err == nil {
				st := a.State("All Mail")
				a.Close()
				if st.UIDNext != 0 {
					t.Fatalf("%v after %v: the All Mail pass had finished", sig, delay)
				}
			}
			// the next run finishes the job
			if _, e, code := runCmdEnv(t, env, "export", "--from", "bridge://me@proton.test@"+br.Addr+"?tls=none", "--to", "eml", "--out", out); code != 0 && code != 3 {
				t.Fatalf("re-run after %v at %v: exit %d: %s", sig, delay, code, e)
			}
			bridgePlaced(t, out, want)
			if stdout, e, code := runCmdEnv(t, env, "export", "--from", "bridge://me@proton.test@"+br.Addr+"?tls=none", "--to", "eml", "--out", out, "--json"); code != 0 || !strings.Contains(stdout, `"messages": 0`) {
				t.Fatalf("third run: exit %d %s %s", code, stdout, e)
			}
		}
	}
}

// TestBridgeMigrateToDovecot: a message in two folders (INBOX and Sent,
// Work and Archive) arrives in both at the target; a re-run adds nothing.
func TestBridgeMigrateToDovecot(t *testing.T) {
	br, _, _ := startBridge(t)
	d := testmail.StartDovecot(t)
	src := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + testmail.BridgePassword, "MAILMOVE_TO_PASSWORD=pw", "XDG_STATE_HOME=" + t.TempDir()}
	args := []string{"migrate", "--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem"),
		"--to", "imaps://dst@" + d.TLSAddr, "--to-ca-file", filepath.Join(d.Dir, "cert.pem")}
	if _, e, code := runCmdEnv(t, env, args...); code != 0 && code != 3 {
		t.Fatalf("migrate: exit %d: %s", code, e)
	}
	want := accountIDs(t, src)
	got := accountIDs(t, d.Config(t, "imaps", "dst"))
	for f, ids := range want {
		if f == "All Mail" || f == "Starred" || strings.HasPrefix(f, "Labels/") {
			continue
		}
		df := strings.TrimPrefix(f, "Folders/")
		g := append([]string{}, got[df]...)
		w := append([]string{}, ids...)
		if df == "Archive" {
			w = append(w, "pm-orphan") // placeholder: the message in no folder goes to Archive
		}
		sort.Strings(g)
		sort.Strings(w)
		if len(g) != len(w) {
			t.Errorf("%s: %d messages at the target, want %d", df, len(g), len(w))
			continue
		}
		if df != "Archive" && strings.Join(g, " ") != strings.Join(w, " ") {
			t.Errorf("%s: %v, want %v", df, g, w)
		}
	}
	if _, e, code := runCmdEnv(t, env, args...); code != 0 && code != 3 {
		t.Fatalf("second migrate: exit %d: %s", code, e)
	}
	again := accountIDs(t, d.Config(t, "imaps", "dst"))
	for f := range got {
		if len(again[f]) != len(got[f]) {
			t.Errorf("re-run changed %s: %d messages, was %d", f, len(again[f]), len(got[f]))
		}
	}
}

// Bridge -> Bridge: Proton labels reach the target as Labels/<label> (a
// COPY labels the same Proton message), not as keywords Bridge cannot
// store, so nothing is reported unstorable.
func TestBridgeMigrateToBridge(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	br2 := testmail.StartBridge(t, 0)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + testmail.BridgePassword, "MAILMOVE_TO_PASSWORD=" + testmail.BridgePassword, "XDG_STATE_HOME=" + t.TempDir()}
	args := []string{"migrate", "--json", "--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem"),
		"--to", "bridge://me@proton.test@" + br2.Addr, "--to-ca-file", filepath.Join(br2.Dir, "cert.pem")}
	o, e, code := runCmdEnv(t, env, args...)
	var v migrateJSON
	// (exit 3: the stand-in serves one message Bridge could not decrypt)
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != exitPartial || len(v.Undecryptable) != 1 || len(v.Unstorable) != 0 || len(v.Failed) != 0 {
		t.Fatalf("migrate: exit %d, %v, unstorable %v, failed %d: %s", code, err, v.Unstorable, len(v.Failed), e)
	}
	time.Sleep(time.Second) // the stand-in applies labels asynchronously, as Bridge does
	got := accountIDs(t, br2.Config(t, "bridge://me@proton.test@"+br2.Addr))
	if len(got["Labels/Important"]) == 0 || len(got["Labels/Travel"]) == 0 {
		t.Fatalf("labels did not arrive: Labels/Important %d, Labels/Travel %d", len(got["Labels/Important"]), len(got["Labels/Travel"]))
	}
}

// TestVerifyInterrupted: Ctrl-C while verify --deep reads a 2 MiB
// message whose bytes trickle (15 kB/s: two minutes): verify stops at
// once, its connections closed under the read, and says it was
// interrupted.
func TestVerifyInterrupted(t *testing.T) {
	srv := testmail.Mem(t)
	var b bytes.Buffer
	b.WriteString("From: big@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n")
	for b.Len() < 2<<20 {
		b.WriteString(strings.Repeat("x", 76) + "\r\n")
	}
	testmail.Put(t, testmail.MemConfig(t, srv.Addr), []testmail.Msg{{Folder: "INBOX", Raw: b.Bytes()}})
	out := filepath.Join(t.TempDir(), "a")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+srv.Addr+"?tls=none", "--to", "eml", "--out", out); code != 0 {
		t.Fatalf("export: exit %d: %s", code, e)
	}
	proxy, seen := stallProxy(t, srv.Addr, "BODY.PEEK[]")
	cmd := exec.Command(binary(t), "verify", "--from", "imap://alice@"+proxy+"?tls=none", "--to", out, "--deep")
	cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=secret", "XDG_STATE_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-seen:
	case err := <-done:
		t.Fatalf("verify ended before reading the message: %v: %s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("verify read no message")
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("verify finished before the signal: %s", stderr.String())
		}
		if !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("after Ctrl-C: %s", stderr.String())
		}
	case <-time.After(2 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("verify still running 2 s after Ctrl-C: %s", stderr.String())
	}
}
