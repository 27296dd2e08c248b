package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/testmail"
)

// The --json tally: seen = appended + already there + refused, per folder,
// every refused message and bad file listed, exit code 3.
func TestImportJSONTally(t *testing.T) {
	dst := testmail.Mem(t)
	dir := t.TempDir()
	write := func(name, raw string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("Work/1.eml", "From: a@example.org\r\nSubject: one\r\nMessage-ID: <t1@example.org>\r\n\r\nbody\r\n")
	write("Work/2.eml", "From: a@example.org\r\nSubject: two\r\nMessage-ID: <t2@example.org>\r\n\r\nbody\r\n")
	write("Work/zip.eml", "PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip")
	write("Home/3.eml", "no header at all, the server takes it\r\n")
	write("Home/notes.bin", "neither mbox nor eml")
	to := "imap://alice@" + dst.Addr + "?tls=none"
	env := []string{"MAILMOVE_TO_PASSWORD=secret"}
	type tally struct {
		OK       bool   `json:"ok"`
		Seen     int    `json:"seen"`
		Appended int    `json:"appended"`
		Already  int    `json:"already_there"`
		Refused  int    `json:"refused"`
		NotDone  int    `json:"not_done"`
		Tally    string `json:"tally"`
		Folders  []struct {
			Folder   string `json:"folder"`
			Messages int    `json:"messages"`
			Appended int    `json:"appended"`
			Present  int    `json:"already_present"`
			Journal  int    `json:"already_imported"`
			Refused  int    `json:"refused"`
		} `json:"folders"`
		Failed []struct {
			Source   string `json:"source"`
			Kind     string `json:"kind"`
			Messages int    `json:"messages"`
		} `json:"failed"`
	}
	jdir := t.TempDir()
	run := func() tally {
		t.Helper()
		stdout, stderr, code := runCmdEnv(t, env, "import", "--to", to, "--journal-dir", jdir, "--json", dir)
		var v tally
		if err := json.Unmarshal([]byte(stdout), &v); err != nil {
			t.Fatalf("%v: %s", err, stdout)
		}
		if code != exitPartial || v.OK {
			t.Fatalf("exit %d (want 3), ok %v: %s", code, v.OK, stderr)
		}
		if !strings.Contains(stderr, "zip.eml") || !strings.Contains(stderr, "notes.bin") {
			t.Fatalf("the reported items are not listed on stderr: %s", stderr)
		}
		return v
	}
	v := run()
	// zip.eml and notes.bin are files that are not mail: reported items,
	// not messages (the walk of the tree tells them apart)
	if v.Seen != 3 || v.Appended != 3 || v.Already != 0 || v.Refused != 0 || v.NotDone != 0 || len(v.Failed) != 2 {
		t.Fatalf("first run: %+v", v)
	}
	kinds := map[string]int{}
	for _, f := range v.Failed {
		kinds[f.Kind] += 1 + f.Messages*10
	}
	if kinds["input"] != 2 {
		t.Fatalf("failures %+v", v.Failed)
	}
	for _, f := range v.Folders {
		want := map[string][2]int{"Work": {2, 2}, "Home": {1, 1}}[f.Folder]
		if f.Messages != want[0] || f.Appended != want[1] || f.Messages != f.Appended+f.Present+f.Journal+f.Refused {
			t.Fatalf("folder %s: %+v", f.Folder, f)
		}
	}
	// again: everything already there (from the journal), the same reports
	v = run()
	if v.Seen != 3 || v.Appended != 0 || v.Already != 3 || v.Refused != 0 || len(v.Failed) != 2 || !strings.Contains(v.Tally, "3 messages seen = 0 appended + 3 already there + 0 refused") {
		t.Fatalf("second run: %+v", v)
	}
}

// silentServer greets, takes the login (with answerSelect, LIST and
// SELECT too), then never answers again: an IMAP server that hangs. It
// returns its address and a channel that gets a value once the client
// waits on it.
func silentServer(t *testing.T, answerSelect bool) (string, chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	waiting := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hanging server ready\r\n"))
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					tag, rest, _ := strings.Cut(l, " ")
					switch cmd := strings.ToUpper(strings.Fields(rest + " x")[0]); cmd {
					case "CAPABILITY":
						c.Write([]byte("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + " OK done\r\n"))
					case "LOGIN":
						c.Write([]byte(tag + " OK logged in\r\n"))
					case "LIST":
						if answerSelect {
							c.Write([]byte("* LIST () \"/\" INBOX\r\n" + tag + " OK done\r\n"))
							continue
						}
						waiting <- struct{}{}
					case "STATUS":
						if answerSelect {
							c.Write([]byte("* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 1 UNSEEN 0)\r\n" + tag + " OK done\r\n"))
							continue
						}
						waiting <- struct{}{}
					case "SELECT":
						if answerSelect {
							c.Write([]byte("* 0 EXISTS\r\n* FLAGS (\\Seen)\r\n* OK [UIDVALIDITY 1] x\r\n" + tag + " OK [READ-WRITE] done\r\n"))
							continue
						}
						waiting <- struct{}{}
					default:
						if answerSelect && cmd != "APPEND" {
							t.Errorf("the client sent %q", l)
						}
						waiting <- struct{}{} // and never answer
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), waiting
}

// Ctrl-C and SIGTERM stop an import promptly, whether it waits on a server
// that does not answer or on input that does not come.
func TestImportStopsOnSignal(t *testing.T) {
	mbox := filepath.Join(testmail.Root(), "testdata", "import", "mboxrd-crlf.mbox")
	for _, c := range []struct {
		name string
		sig  os.Signal
	}{{"server SIGINT", os.Interrupt}, {"server SIGTERM", syscall.SIGTERM}, {"append SIGINT", os.Interrupt}, {"append SIGTERM", syscall.SIGTERM},
		{"stdin SIGINT", os.Interrupt}, {"stdin SIGTERM", syscall.SIGTERM}} {
		t.Run(c.name, func(t *testing.T) {
			addr, waiting := silentServer(t, strings.HasPrefix(c.name, "append"))
			src := mbox
			if strings.HasPrefix(c.name, "stdin") {
				src = "-"
			}
			cmd := exec.Command(binary(t), "import", "--to", "imap://alice@"+addr+"?tls=none", "--journal-dir", t.TempDir(), src)
			tmp := t.TempDir()
			cmd.Env = append(os.Environ(), "MAILMOVE_TO_PASSWORD=secret", "TMPDIR="+tmp)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			var stdinW *os.File
			if src == "-" {
				r, w, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				defer w.Close()
				w.Write([]byte("From a@example.org Mon Jan  6 08:15:00 2025\nFrom: a@example.org\n")) // and nothing more, never EOF
				cmd.Stdin, stdinW = r, w
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			if stdinW == nil {
				select {
				case <-waiting:
				case err := <-done:
					t.Fatalf("the import ended before it waited on the server: %v: %s", err, stderr.String())
				case <-time.After(30 * time.Second):
					t.Fatal("the import never reached the server")
				}
			} else {
				// reading standard input: into a copy in TMPDIR, once the
				// import has begun (and listens for signals)
				for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
					if m, _ := filepath.Glob(filepath.Join(tmp, "mailmove-stdin-*")); len(m) > 0 {
						break
					}
					if time.Since(start) > 30*time.Second {
						t.Fatal("the import never began reading standard input")
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			sent := time.Now()
			cmd.Process.Signal(c.sig)
			select {
			case err := <-done:
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.ExitCode() != exitFailed || !strings.Contains(stderr.String(), "interrupted") {
					t.Fatalf("after %v: %v: %s", c.sig, err, stderr.String())
				}
				if strings.Contains(stderr.String(), "did not stop within") {
					t.Fatalf("the run did not stop by itself: %s", stderr.String())
				}
				t.Logf("stopped %v after the signal", time.Since(sent).Round(time.Millisecond))
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("still running 20 s after %v: %s", c.sig, stderr.String())
			}
		})
	}
}
