package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/formats/mbox"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the mailmove command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mailmove-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mailmove")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func seedServer(t *testing.T, n int) *account.MemServer {
	t.Helper()
	srv, err := account.ServeMemory("alice", "secret", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	u, _ := account.ParseURL("imap://alice@" + srv.Addr + "?tls=none")
	t.Setenv("MAILMOVE_SEED_PW", "secret")
	c, err := (&account.Config{URL: u, Password: account.PasswordSource{Env: "MAILMOVE_SEED_PW"}}).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	folders := []string{"INBOX", "Sent", "Archive/2024", "Entwürfe"}
	for _, f := range folders[1:] {
		c.Create(f, nil).Wait()
	}
	r := rand.New(rand.NewSource(42))
	for i := 0; i < n; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "From: s%d@example.org\r\nSubject: m%d\r\nMessage-ID: <k%d@example.org>\r\n\r\nFrom a body line\r\n", i, i, i)
		lines := 20 + r.Intn(400)
		for l := 0; l < lines; l++ {
			fmt.Fprintf(&b, "%d %x %x\r\n", l, r.Int63(), r.Int63())
		}
		raw := b.String()
		ap := c.Append(folders[i%len(folders)], int64(len(raw)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: time.Unix(1700000000+int64(i)*60, 0)})
		io.WriteString(ap, raw)
		ap.Close()
		if _, err := ap.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCmdEnv(t, []string{"MAILMOVE_FROM_PASSWORD=secret"}, args...)
}

func runCmdEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(append(os.Environ(), "XDG_STATE_HOME="+t.TempDir()), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// contents describes an archive: for every folder the sorted (uid, sha256)
// pairs, after checking that the message files hold exactly the indexed
// messages and nothing else.
func contents(t *testing.T, out string) map[string][]string {
	t.Helper()
	a, err := archive.Open(out, "", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	res := map[string][]string{}
	files := map[string]bool{}
	for _, folder := range a.Folders() {
		recs, err := a.Records(folder)
		if err != nil {
			t.Fatal(err)
		}
		var offsets []int64
		mboxFile := ""
		for _, r := range recs {
			res[folder] = append(res[folder], fmt.Sprintf("%d:%s", r.UID, r.SHA256))
			files[r.File] = true
			if a.Header.Format == archive.Mbox {
				offsets = append(offsets, r.Offset)
				mboxFile = r.File
			}
		}
		sort.Strings(res[folder])
		if mboxFile != "" {
			// the mbox file holds exactly the indexed messages, in order
			f, err := os.Open(filepath.Join(out, mboxFile))
			if err != nil {
				t.Fatal(err)
			}
			mr := mbox.NewReader(bufio.NewReader(f))
			n := 0
			for {
				m, err := mr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, m)
				n++
			}
			f.Close()
			if n != len(offsets) {
				t.Fatalf("%s holds %d messages, the index %d", mboxFile, n, len(offsets))
			}
		}
	}
	if a.Header.Format == archive.EML {
		filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
			rel, _ := filepath.Rel(out, p)
			if fi.IsDir() || strings.HasPrefix(rel, ".mailmove") {
				return nil
			}
			if !files[filepath.ToSlash(rel)] {
				t.Errorf("stray file %s", rel)
			}
			return nil
		})
	}
	return res
}

// slowProxy forwards to target at about 16 MB/s, so that a run lasts long
// enough to be killed in the middle.
func slowProxy(t *testing.T, target string) string {
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
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
						time.Sleep(2 * time.Millisecond)
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

func TestKillAndResume(t *testing.T) {
	srv := seedServer(t, 1500)
	from := "imap://alice@" + slowProxy(t, srv.Addr) + "?tls=none"
	for _, format := range []string{"mbox", "eml"} {
		t.Run(format, func(t *testing.T) {
			clean := filepath.Join(t.TempDir(), "clean")
			if _, e, code := runCmd(t, "export", "--from", from, "--to", format, "--out", clean); code != 0 {
				t.Fatalf("clean run: exit %d: %s", code, e)
			}
			want := contents(t, clean)

			out := filepath.Join(t.TempDir(), "killed")
			kills := killRuns(t, 12, 1, []string{"MAILMOVE_FROM_PASSWORD=secret"}, "export", "--from", from, "--to", format, "--out", out, "--connections", "2")
			// Ctrl-C: a clean stop, exit 1, and a hint to run again.
			intr := filepath.Join(t.TempDir(), "interrupted")
			cmd := exec.Command(binary(t), "export", "--from", from, "--to", format, "--out", intr)
			cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=secret")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Ctrl-C once the export is at work (its archive exists): a
			// signal sent before the program runs at all (a loaded machine
			// can take longer than any fixed wait to start it) would test
			// nothing but the default action.
			for i := 0; i < 1000; i++ {
				if _, err := os.Stat(filepath.Join(intr, ".mailmove")); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cmd.Process.Signal(os.Interrupt)
			err := cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "run the same command again") {
				t.Fatalf("after Ctrl-C: %v: %s", err, stderr.String())
			}
			if _, e, code := runCmd(t, "export", "--from", from, "--to", format, "--out", intr); code != 0 {
				t.Fatalf("run after Ctrl-C: exit %d: %s", code, e)
			}
			if g := contents(t, intr); len(g) != len(want) {
				t.Fatalf("after Ctrl-C and a re-run: %d folders", len(g))
			}
			if _, e, code := runCmd(t, "export", "--from", from, "--to", format, "--out", out); code != 0 {
				t.Fatalf("final run: exit %d: %s", code, e)
			}
			got := contents(t, out)
			if len(got) != len(want) {
				t.Fatalf("folders: got %d, want %d", len(got), len(want))
			}
			for f, w := range want {
				if strings.Join(got[f], ",") != strings.Join(w, ",") {
					t.Fatalf("folder %s after %d kills: %d messages, want %d (or different ones)", f, kills, len(got[f]), len(w))
				}
			}
			t.Logf("%d kills", kills)
		})
	}
}

func TestExitCodesAndJSON(t *testing.T) {
	srv := seedServer(t, 10)
	from := "imap://alice@" + srv.Addr + "?tls=none"
	out := filepath.Join(t.TempDir(), "a")
	stdout, stderr, code := runCmd(t, "export", "--from", from, "--to", "mbox", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("not quiet off a terminal: %q", stderr)
	}
	var sum struct {
		OK       bool `json:"ok"`
		Messages int  `json:"messages"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || !sum.OK || sum.Messages != 10 {
		t.Fatalf("json %q: %v", stdout, err)
	}
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"export", "--from", from, "--to", "zip", "--out", out}, 2, "want mbox or eml"},
		{[]string{"export", "--from", "imap://a@example.org:143?tls=none", "--to", "mbox", "--out", out}, 2, "plaintext"},
		{[]string{"export", "--from", "imaps://a:pw@example.org", "--to", "mbox", "--out", out}, 2, "password"},
		{[]string{"export", "--from", from, "--to", "eml", "--out", out}, 1, "is a mbox archive"},
		{[]string{"export", "--from", "imap://a@127.0.0.1:1?tls=none", "--to", "mbox", "--out", t.TempDir()}, 1, "connect"},
		{[]string{"frobnicate"}, 2, "unknown command"},
	}
	for _, c := range cases {
		_, e, code := runCmd(t, c.args...)
		if code != c.code || !strings.Contains(e, c.msg) {
			t.Errorf("%v: exit %d (%q), want %d and %q", c.args, code, e, c.code, c.msg)
		}
	}
	// the demo works with no account at all
	if _, e, code := runCmd(t, "export", "--from", "demo", "--to", "eml", "--out", filepath.Join(t.TempDir(), "demo")); code != 0 {
		t.Fatalf("demo: exit %d: %s", code, e)
	}
	stdout, _, code = runCmd(t, "folders", "--from", "demo")
	if code != 0 || !strings.Contains(stdout, "Entwürfe") || !strings.Contains(stdout, "10 messages") {
		t.Fatalf("folders: %d %q", code, stdout)
	}
}

// TestMemoryFlat exports a 60 MB message and checks that the mailmove
// process never held it in memory.
func TestMemoryFlat(t *testing.T) {
	srv, err := account.ServeMemory("alice", "secret", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	u, _ := account.ParseURL("imap://alice@" + srv.Addr + "?tls=none")
	t.Setenv("MAILMOVE_SEED_PW", "secret")
	c, err := (&account.Config{URL: u, Password: account.PasswordSource{Env: "MAILMOVE_SEED_PW"}}).Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("From: big@example.org\r\nSubject: big\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 2) + "\r\n"
	for b.Len() < 60<<20 {
		b.WriteString(line)
	}
	ap := c.Append("INBOX", int64(b.Len()), nil)
	ap.Write(b.Bytes())
	ap.Close()
	if _, err := ap.Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	dst, err := account.ServeMemory("alice", "secret", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for _, format := range []string{"mbox", "eml", "import"} {
		out := filepath.Join(t.TempDir(), "a")
		args := []string{"export", "--from", "imap://alice@" + srv.Addr + "?tls=none", "--to", format, "--out", out}
		if format == "import" {
			// import the 60 MiB message from an mbox archive
			if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+srv.Addr+"?tls=none", "--to", "mbox", "--out", out); code != 0 {
				t.Fatal(e)
			}
			args = []string{"import", "--to", "imap://alice@" + dst.Addr + "?tls=none", "--journal-dir", t.TempDir(), out}
		}
		cmd := exec.Command(binary(t), args...)
		// rusage's maxrss would count the test process the child was forked
		// from; the child reports its own VmHWM instead.
		cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret", "MAILMOVE_DEBUG_PEAK_RSS=1")
		res, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", format, err, res)
		}
		var maxRSS int64
		parts := strings.SplitN(string(res), "VmHWM:", 2)
		if _, err := fmt.Sscanf(strings.TrimSpace(parts[len(parts)-1]), "%d kB", &maxRSS); err != nil {
			t.Fatalf("no peak RSS in %q", res)
		}
		t.Logf("%s: peak RSS %d MiB for a 60 MiB message", format, maxRSS/1024)
		if maxRSS > 50<<10 {
			t.Errorf("%s: peak RSS %d MiB: the message was held in memory", format, maxRSS/1024)
		}
	}
}

// killRuns starts mailmove with args n times and kills each run with
// SIGKILL after a random 20 to 270 ms (a run that ends sooner is left
// alone). It returns how many runs were killed.
func killRuns(t *testing.T, n int, seed int64, env []string, args ...string) int {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	kills := 0
	for i := 0; i < n; i++ {
		cmd := exec.Command(binary(t), args...)
		cmd.Env = append(os.Environ(), env...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-time.After(time.Duration(20+r.Intn(250)) * time.Millisecond):
			cmd.Process.Kill()
			<-done
			kills++
		case <-done:
		}
	}
	return kills
}
