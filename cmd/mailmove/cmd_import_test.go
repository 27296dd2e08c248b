package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/internal/testmail"
	"github.com/mailmove/mailmove/message"
)

// messageIDs lists, per folder, the Message-IDs alice holds on an
// in-memory server.
func messageIDs(t *testing.T, addr string) map[string][]string {
	t.Helper()
	return accountIDs(t, testmail.MemConfig(t, addr))
}

// accountIDs lists, per folder, the Message-IDs an account holds.
func accountIDs(t *testing.T, cfg *account.Config) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for f, msgs := range testmail.Held(t, cfg) {
		for _, m := range msgs {
			id, _, _ := message.HeaderFields(bufio.NewReader(bytes.NewReader(m.Raw)))
			out[f] = append(out[f], id)
		}
	}
	return out
}

func TestImportKillAndResume(t *testing.T) {
	src := seedServer(t, 600)
	archive := filepath.Join(t.TempDir(), "archive")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", "mbox", "--out", archive); code != 0 {
		t.Fatalf("export: %d %s", code, e)
	}
	want := messageIDs(t, src.Addr)

	dst := testmail.MemStrict(t)
	to := "imap://alice@" + slowProxy(t, dst.Addr) + "?tls=none"
	jdir := t.TempDir()
	killRuns(t, 10, 2, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--to", to, "--journal-dir", jdir, archive)
	cmd := exec.Command(binary(t), "import", "--to", to, "--journal-dir", jdir, "--json", archive)
	cmd.Env = append(os.Environ(), "MAILMOVE_TO_PASSWORD=secret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("final import: %v\n%s", err, out)
	}
	exactlyOnce(t, want, messageIDs(t, dst.Addr))
	// and once more: nothing appended
	stdout, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--to", to, "--journal-dir", jdir, "--json", archive)
	if code != 0 || !strings.Contains(stdout, `"appended": 0`) {
		t.Fatalf("re-run: %d %s %s", code, stdout, e)
	}
	// dry run names the folders and changes nothing
	stdout, _, code = runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--to", "imap://alice@"+testmail.Mem(t).Addr+"?tls=none", "--dry-run", archive)
	if code != 0 || !strings.Contains(stdout, "Archive/2024") || !strings.Contains(stdout, "yes") {
		t.Fatalf("dry run: %d %s", code, stdout)
	}
}

func TestImportFromStdin(t *testing.T) {
	dst := testmail.Mem(t)
	f, err := os.Open(filepath.Join(testmail.Root(), "testdata", "import", "mboxrd-crlf.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(binary(t), "import", "--to", "imap://alice@"+dst.Addr+"?tls=none", "--journal-dir", t.TempDir(), "--folder", "FromStdin", "--json", "-")
	cmd.Env = append(os.Environ(), "MAILMOVE_TO_PASSWORD=secret")
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"appended": 2`) {
		t.Fatalf("%v: %s", err, out)
	}
	if got := messageIDs(t, dst.Addr); len(got["FromStdin"]) != 2 {
		t.Fatalf("FromStdin holds %v", got)
	}
}

// The same against Dovecot, where imports go in MULTIAPPEND batches.
func TestImportKillAndResumeDovecot(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := seedServer(t, 600)
	arch := filepath.Join(t.TempDir(), "archive")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", "eml", "--out", arch); code != 0 {
		t.Fatalf("export: %d %s", code, e)
	}
	want := messageIDs(t, src.Addr)
	to := "imaps://dst@" + slowProxy(t, d.TLSAddr)
	ca := filepath.Join(d.Dir, "cert.pem")
	jdir := t.TempDir()
	env := append(os.Environ(), "MAILMOVE_TO_PASSWORD=pw")
	killRuns(t, 10, 3, []string{"MAILMOVE_TO_PASSWORD=pw"}, "import", "--to", to, "--to-ca-file", ca, "--journal-dir", jdir, arch)
	cmd := exec.Command(binary(t), "import", "--to", to, "--to-ca-file", ca, "--journal-dir", jdir, arch)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("final import: %v\n%s", err, out)
	}
	exactlyOnce(t, want, accountIDs(t, d.Config(t, "imaps", "dst")))
}

// exactlyOnce checks that every folder of got holds each Message-ID of
// want once, and nothing else.
func exactlyOnce(t *testing.T, want, got map[string][]string) {
	t.Helper()
	for f, ids := range want {
		seen := map[string]int{}
		for _, id := range got[f] {
			seen[id]++
		}
		for _, id := range ids {
			if seen[id] != 1 {
				t.Fatalf("folder %s: %s is there %d times", f, id, seen[id])
			}
		}
		if len(got[f]) != len(ids) {
			t.Fatalf("folder %s: %d messages, want %d", f, len(got[f]), len(ids))
		}
	}
}
