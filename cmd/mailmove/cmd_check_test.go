package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/testmail"
)

func TestCheck(t *testing.T) {
	for _, format := range []string{"mbox", "eml"} {
		out := filepath.Join(t.TempDir(), "demo")
		if _, e, code := runCmd(t, "export", "--from", "demo", "--to", format, "--out", out); code != 0 {
			t.Fatal(e)
		}
		stdout, e, code := runCmd(t, "check", out)
		if code != 0 || !strings.Contains(stdout, "10 messages") || !strings.Contains(stdout, "0 problems") {
			t.Fatalf("%s: clean archive: %d %q %q", format, code, stdout, e)
		}
		// damage one byte of one message, and add a stray file / torn tail
		var victim string
		filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
			if victim == "" && !fi.IsDir() && strings.Contains(p, "INBOX") && !strings.Contains(p, ".mailmove") {
				victim = p
			}
			return nil
		})
		b, _ := os.ReadFile(victim)
		i := strings.Index(string(b), "Welcome")
		b[i] = 'w'
		os.WriteFile(victim, b, 0o600)
		if format == "eml" {
			os.WriteFile(filepath.Join(out, "INBOX", "stray.eml"), []byte("x"), 0o600)
		} else {
			f, _ := os.OpenFile(victim, os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("From MAILER-DAEMON Thu Jan  1 00:00:00 1970\r\nhalf a mess")
			f.Close()
		}
		_, e, code = runCmd(t, "check", out)
		if code != 3 || !strings.Contains(e, "do not match their SHA-256") {
			t.Fatalf("%s: damaged archive: exit %d, %q", format, code, e)
		}
		if format == "eml" && !strings.Contains(e, "stray.eml: a file the index does not know") {
			t.Fatalf("stray file not reported: %q", e)
		}
		if format == "mbox" && !strings.Contains(e, "bytes after the last indexed message") {
			t.Fatalf("torn tail not reported: %q", e)
		}
	}
}

// An mbox archive with LF line endings checks, and imports back to the
// server's exact bytes.
func TestLFArchive(t *testing.T) {
	src := testmail.Mem(t)
	msgs := testmail.Gen(30, []string{"INBOX", "Sent"}, 17)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), msgs)
	out := filepath.Join(t.TempDir(), "lf")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", "mbox", "--mbox-line-endings", "lf", "--out", out); code != 0 {
		t.Fatal(e)
	}
	b, _ := os.ReadFile(filepath.Join(out, "INBOX.mbox"))
	if strings.Contains(string(b), "\r\n") {
		t.Fatal("CRLF in an LF mbox")
	}
	if stdout, e, code := runCmd(t, "check", out); code != 0 {
		t.Fatalf("check: %d %s %s", code, stdout, e)
	}
	dst := testmail.Mem(t)
	if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--to", "imap://alice@"+dst.Addr+"?tls=none", out); code != 0 {
		t.Fatal(e)
	}
	got := map[string]bool{}
	for f, held := range testmail.Held(t, testmail.MemConfig(t, dst.Addr)) {
		for _, m := range held {
			got[f+"\x00"+string(m.Raw)] = true
		}
	}
	for _, m := range msgs {
		if !got[m.Folder+"\x00"+string(m.Raw)] {
			t.Fatalf("a message of %s did not come back byte for byte", m.Folder)
		}
	}
}

// TestCheckDetectsLoss: check reports a deleted .eml file, a truncated
// mbox file and a flipped byte, naming the file, with exit code 3.
func TestCheckDetectsLoss(t *testing.T) {
	for _, format := range []string{"eml", "mbox"} {
		out := filepath.Join(t.TempDir(), "demo")
		if _, e, code := runCmd(t, "export", "--from", "demo", "--to", format, "--out", out); code != 0 {
			t.Fatal(e)
		}
		var files []string
		filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
			if !fi.IsDir() && !strings.Contains(p, ".mailmove") {
				files = append(files, p)
			}
			return nil
		})
		rel := func(p string) string { r, _ := filepath.Rel(out, p); return filepath.ToSlash(r) }
		switch format {
		case "eml":
			// delete one message, flip a byte of another
			os.Remove(files[0])
			b, _ := os.ReadFile(files[1])
			b[len(b)/2] ^= 1
			os.WriteFile(files[1], b, 0o600)
			_, e, code := runCmd(t, "check", out)
			if code != 3 || !strings.Contains(e, rel(files[0])) || !strings.Contains(e, "no such file") || !strings.Contains(e, rel(files[1])) || !strings.Contains(e, "do not match their SHA-256") {
				t.Fatalf("eml: exit %d, %q", code, e)
			}
		case "mbox":
			// cut the last 100 bytes off the biggest mbox file
			big := files[0]
			for _, f := range files {
				a, _ := os.Stat(f)
				b, _ := os.Stat(big)
				if a.Size() > b.Size() {
					big = f
				}
			}
			fi, _ := os.Stat(big)
			os.Truncate(big, fi.Size()-100)
			_, e, code := runCmd(t, "check", out)
			if code != 3 || !strings.Contains(e, rel(big)) {
				t.Fatalf("mbox: exit %d, %q", code, e)
			}
		}
	}
}
