//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// writeConfig writes a configuration file (0600) and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// pwFile writes a password file (0600) and returns its path.
func pwFile(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// logLines reads a --log file: job -> its lines' fields, in order.
func logLines(t *testing.T, p string) map[string][]map[string]string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)
	out := map[string][]map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if _, err := time.Parse(time.RFC3339, strings.Fields(l)[0]); err != nil {
			t.Fatalf("log line without a time: %q", l)
		}
		f := map[string]string{}
		for _, m := range re.FindAllStringSubmatch(l, -1) {
			f[m[1]] = strings.Trim(m[2], `"`)
		}
		out[f["job"]] = append(out[f["job"]], f)
	}
	return out
}

// archivedIDs returns the Message-IDs an archive holds, by folder.
func archivedIDs(t *testing.T, out string) map[string][]string {
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
			got[f] = append(got[f], r.MessageID)
		}
		sort.Strings(got[f])
	}
	return got
}

// newMsg is a message with a known Message-ID.
func newMsg(folder, id string) testmail.Msg {
	raw := fmt.Sprintf("From: n@example.org\r\nTo: me@example.org\r\nSubject: new %s\r\nMessage-ID: <%s>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nnew mail %s\r\n", id, id, id)
	return testmail.Msg{Folder: folder, Raw: []byte(raw), Flags: []imap.Flag{}, Date: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
}

// TestBackupTwoJobs: a Dovecot job and a Proton Mail Bridge job. The first
// run exports everything; the second exports nothing and prints nothing
// (stderr is not a terminal); after new mail on both servers the third
// exports exactly that.
func TestBackupTwoJobs(t *testing.T) {
	dc := testmail.StartDovecot(t)
	dcfg := dc.Config(t, "imaps", "src")
	msgs := testmail.Gen(60, []string{"INBOX", "Sent", "Archiv/2024"}, 5)
	testmail.Put(t, dcfg, msgs)
	br, want, _ := startBridge(t)

	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf(`
[accounts.dovecot]
url = "imaps://src@%s"
ca_file = %q
password_file = %q

[accounts.proton]
url = "bridge://me@proton.test@%s"
ca_file = %q
password_env = "TEST_BRIDGE_PW"

[jobs.dovecot]
account = "dovecot"
format = "mbox"
out = %q

[jobs.proton]
account = "proton"
format = "eml"
out = %q
`, dc.TLSAddr, filepath.Join(dc.Dir, "cert.pem"), pwFile(t, "pw"), br.Addr, filepath.Join(br.Dir, "cert.pem"),
		filepath.Join(dir, "dovecot"), filepath.Join(dir, "proton")))
	logPath := filepath.Join(dir, "logs", "backup.log")
	env := []string{"TEST_BRIDGE_PW=" + testmail.BridgePassword}
	backup := func(args ...string) {
		t.Helper()
		o, e, code := runCmdEnv(t, env, append([]string{"backup", "--config", cfg, "--log", logPath}, args...)...)
		if code != 0 || o != "" || e != "" {
			t.Fatalf("backup: exit %d, stdout %q, stderr %q (want 0 and silence)", code, o, e)
		}
	}

	// The stand-in has one message Bridge cannot decrypt: archived, and
	// reported once, with exit code 3.
	o, e, code := runCmdEnv(t, env, "backup", "--config", cfg, "--log", logPath)
	if code != exitPartial || o != "" || strings.Count(e, "\n") != 1 || !strings.Contains(e, "job proton: ") || !strings.Contains(e, "1 Proton Mail Bridge could not decrypt") {
		t.Fatalf("first run: exit %d, stdout %q, stderr %q", code, o, e)
	}
	log := logLines(t, logPath)
	if len(log["dovecot"]) != 1 || log["dovecot"][0]["new"] != fmt.Sprint(len(msgs)) || log["dovecot"][0]["status"] != "ok" {
		t.Fatalf("first run, dovecot: %v", log["dovecot"])
	}
	placed := 0 // a message in two folders is stored in each
	for _, w := range want {
		placed += 1 + len(w.Also)
	}
	if len(log["proton"]) != 1 || log["proton"][0]["new"] != fmt.Sprint(placed) || log["proton"][0]["status"] != "partial" {
		t.Fatalf("first run, proton: %v (want %d new)", log["proton"], placed)
	}
	bridgePlaced(t, filepath.Join(dir, "proton"), want)
	wantIDs := map[string][]string{}
	for _, m := range msgs {
		id := regexp.MustCompile(`Message-ID: <([^>]+)>`).FindStringSubmatch(string(m.Raw))[1]
		wantIDs[m.Folder] = append(wantIDs[m.Folder], id)
	}
	check := func() {
		t.Helper()
		for f := range wantIDs {
			sort.Strings(wantIDs[f])
		}
		got := archivedIDs(t, filepath.Join(dir, "dovecot"))
		for f, ids := range wantIDs {
			if strings.Join(got[f], " ") != strings.Join(ids, " ") {
				t.Fatalf("dovecot archive, %s: %d messages, want %d", f, len(got[f]), len(ids))
			}
		}
	}
	check()

	// Nothing new: nothing exported, nothing printed.
	backup()
	log = logLines(t, logPath)
	for _, j := range []string{"dovecot", "proton"} {
		if l := log[j][1]; l["new"] != "0" || l["status"] != "ok" || l["bytes"] != "0" {
			t.Fatalf("second run, %s: %v", j, l)
		}
	}

	// New mail on both servers: the third run exports exactly that.
	added := []testmail.Msg{newMsg("INBOX", "n1@example.org"), newMsg("Sent", "n2@example.org"), newMsg("INBOX", "n3@example.org")}
	testmail.Put(t, dcfg, added)
	wantIDs["INBOX"] = append(wantIDs["INBOX"], "n1@example.org", "n3@example.org")
	wantIDs["Sent"] = append(wantIDs["Sent"], "n2@example.org")
	bcfg := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	testmail.Put(t, bcfg, []testmail.Msg{newMsg("Folders/Work", "b1@example.org")})
	backup("--parallel", "2")
	log = logLines(t, logPath)
	if l := log["dovecot"][2]; l["new"] != "3" || l["status"] != "ok" {
		t.Fatalf("third run, dovecot: %v", l)
	}
	check()
	if l := log["proton"][2]; l["new"] != "1" || l["status"] != "ok" {
		t.Fatalf("third run, proton: %v", l)
	}
	if got := archivedIDs(t, filepath.Join(dir, "proton"))["Work"]; !strings.Contains(strings.Join(got, " "), "b1@example.org") {
		t.Fatalf("the new Bridge message is not in Work: %v", got)
	}
	for _, j := range []string{"dovecot", "proton"} {
		if o, e, code := runCmd(t, "check", filepath.Join(dir, j)); code != 0 {
			t.Fatalf("check %s: %d %s %s", j, code, o, e)
		}
	}
}

// memJob is the configuration of one job on the in-memory server at addr.
func memJob(t *testing.T, addr, format, out, extra string) string {
	return fmt.Sprintf(`
[accounts.mem]
url = "imap://alice@%s?tls=none"
password_file = %q

[jobs.mem]
account = "mem"
format = %q
out = %q
%s
`, addr, pwFile(t, "secret"), format, out, extra)
}

// TestBackupLock: a run on an archive another mailmove holds waits up to
// --lock-wait, then gives up on the job with exit code 5; two overlapping
// runs leave the archive exact; a lock whose holder was killed (kill -9) is
// taken over.
func TestBackupLock(t *testing.T) {
	srv := seedServer(t, 600)
	addr := slowProxy(t, srv.Addr)
	clean := filepath.Join(t.TempDir(), "clean")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+srv.Addr+"?tls=none", "--to", "eml", "--out", clean); code != 0 {
		t.Fatal(e)
	}
	want := contents(t, clean)
	exact := func(out string) {
		t.Helper()
		got := contents(t, out)
		if len(got) != len(want) {
			t.Fatalf("%d folders, want %d", len(got), len(want))
		}
		for f, w := range want {
			if strings.Join(got[f], ",") != strings.Join(w, ",") {
				t.Fatalf("folder %s: %d messages, want %d (or others)", f, len(got[f]), len(w))
			}
		}
	}

	t.Run("held", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "a")
		cfg := writeConfig(t, memJob(t, srv.Addr, "eml", out, ""))
		a, err := archive.Open(out, archive.EML, false, "test")
		if err != nil {
			t.Fatal(err)
		}
		_, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--lock-wait", "0")
		if code != exitLocked || !strings.Contains(e, "another mailmove is using this archive") || strings.Count(e, "\n") != 1 {
			t.Fatalf("held archive, --lock-wait 0: exit %d, %q", code, e)
		}
		// A run that waits gets the archive once the holder lets go.
		cmd := exec.Command(binary(t), "backup", "--config", cfg, "--lock-wait", "10m")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let go once it waits: it holds the lock file open (Linux's
		// /proc shows it) while this process holds the lock.
		lockPath := filepath.Join(out, ".mailmove", "lock")
		waiting := func() bool {
			fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", cmd.Process.Pid))
			for _, fd := range fds {
				if l, _ := os.Readlink(fd); l == lockPath {
					return true
				}
			}
			return false
		}
		if _, err := os.Stat("/proc/self/fd"); err == nil {
			for i := 0; i < 6000 && !waiting(); i++ {
				time.Sleep(5 * time.Millisecond)
			}
			if !waiting() {
				t.Fatalf("the second run never waited for the lock: %s", stderr.String())
			}
		}
		a.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("waiting run: %v: %s", err, stderr.String())
		}
		exact(out)
	})

	t.Run("overlap", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "a")
		cfg := writeConfig(t, memJob(t, addr, "eml", out, ""))
		logPath := filepath.Join(t.TempDir(), "log")
		var cmds []*exec.Cmd
		var errs []*bytes.Buffer
		for i := 0; i < 2; i++ {
			cmd := exec.Command(binary(t), "backup", "--config", cfg, "--lock-wait", "10m", "--log", logPath)
			errs = append(errs, &bytes.Buffer{})
			cmd.Stderr = errs[i]
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, cmd)
		}
		for i, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Fatalf("run %d: %v: %s", i, err, errs[i])
			}
		}
		exact(out)
		// together they wrote every message once
		n := 0
		for _, l := range logLines(t, logPath)["mem"] {
			var k int
			fmt.Sscan(l["new"], &k)
			n += k
		}
		if n != 600 {
			t.Fatalf("the two runs wrote %d messages, want 600", n)
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "a")
		cfg := writeConfig(t, memJob(t, addr, "mbox", out, ""))
		cmd := exec.Command(binary(t), "backup", "--config", cfg)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// SIGKILL once it holds the archive (its state folder exists and
		// its lock is taken).
		lock := filepath.Join(out, ".mailmove", "lock")
		held := func() bool {
			f, err := os.Open(lock)
			if err != nil {
				return false
			}
			defer f.Close()
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
				return true
			}
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return false
		}
		for i := 0; i < 3000 && !held(); i++ {
			time.Sleep(5 * time.Millisecond)
		}
		if !held() {
			t.Fatal("the backup never took the archive's lock")
		}
		cmd.Process.Kill()
		cmd.Wait()
		_, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--lock-wait", "0")
		if code != 0 {
			t.Fatalf("run after kill -9: exit %d: %s", code, e)
		}
		got := contents(t, out)
		for f, w := range want {
			if len(got[f]) != len(w) {
				t.Fatalf("folder %s: %d messages, want %d", f, len(got[f]), len(w))
			}
		}
		if o, e, code := runCmd(t, "check", out); code != 0 {
			t.Fatalf("check: %s %s", o, e)
		}
	})
}

// TestBackupConfigMistakes: a broken configuration is refused with its
// file and line, exit code 2, before anything runs.
func TestBackupConfigMistakes(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"[accounts.a]\nurl = \"imaps://me@example.org\"\n\n[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/tmp/x\"\nexlude = [\"Spam\"]\n", `:8: unknown key "exlude"`},
		{"[accounts.a]\nurl = \"imaps://me:secret@example.org\"\n", ":2: the url of account a holds a password"},
		{"[accounts.a]\nurl = \"imaps://me@example.org\"\n[jobs.j]\naccount = \"b\"\nformat = \"mbox\"\nout = \"/tmp/x\"\n", `:4: job j names account "b"`},
		{"[jobs.j\n", ":1: TOML syntax"},
	} {
		cfg := writeConfig(t, c.src)
		_, e, code := runCmdEnv(t, nil, "backup", "--config", cfg)
		if code != exitUsage || !strings.Contains(e, cfg+c.want) || strings.Contains(e, "secret") {
			t.Errorf("exit %d, %q; want 2 and %q", code, e, cfg+c.want)
		}
	}
	// others may change the file: refused (it names commands mailmove runs)
	cfg := writeConfig(t, "")
	os.Chmod(cfg, 0o666)
	if _, e, code := runCmdEnv(t, nil, "backup", "--config", cfg); code != exitUsage || !strings.Contains(e, "chmod go-w") {
		t.Errorf("world-writable config: %d %q", code, e)
	}
	// an unknown job
	cfg = writeConfig(t, "[accounts.a]\nurl = \"imaps://me@example.org\"\n[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/tmp/x\"\n")
	if _, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "k"); code != exitUsage || !strings.Contains(e, `no job "k"`) {
		t.Errorf("unknown job: %d %q", code, e)
	}
}

// TestBackupOnFailure: a job that fails (wrong password) runs its
// on_failure command with the job's name and summary, never the password;
// the other job goes on; one line per failed job; exit code 1; --json and
// --log say the same.
func TestBackupOnFailure(t *testing.T) {
	srv := seedServer(t, 20)
	dir := t.TempDir()
	hook := filepath.Join(dir, "hook.txt")
	cfg := writeConfig(t, fmt.Sprintf(`
[accounts.good]
url = "imap://alice@%s?tls=none"
password_env = "TEST_GOOD_PW"

[accounts.bad]
url = "imap://alice@%s?tls=none"
password_file = %q

[jobs.good]
account = "good"
format = "mbox"
out = %q
on_failure = "echo never > %s.good"

[jobs.bad]
account = "bad"
format = "eml"
out = %q
on_failure = "{ echo \"job=$MAILMOVE_JOB status=$MAILMOVE_STATUS archive=$MAILMOVE_ARCHIVE\"; echo \"summary=$MAILMOVE_SUMMARY\"; cat; env; } > %s"
`, srv.Addr, srv.Addr, pwFile(t, "wrong-password-xyz"), filepath.Join(dir, "good"), hook, filepath.Join(dir, "bad"), hook))
	logPath := filepath.Join(dir, "log")
	o, e, code := runCmdEnv(t, []string{"TEST_GOOD_PW=secret"}, "backup", "--config", cfg, "--json", "--log", logPath)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1: %s", code, e)
	}
	if lines := strings.Split(strings.TrimSpace(e), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "job bad failed") {
		t.Fatalf("stderr: want one line for the failed job, got %q", e)
	}
	b, err := os.ReadFile(hook)
	if err != nil {
		t.Fatalf("on_failure did not run: %v", err)
	}
	h := string(b)
	if !strings.Contains(h, "job=bad status=failed archive="+filepath.Join(dir, "bad")) || !strings.Contains(h, "summary=job bad failed") || strings.Count(h, "job bad failed") < 3 {
		t.Fatalf("on_failure got %q", h)
	}
	if strings.Contains(h, "wrong-password-xyz") || strings.Contains(h, "TEST_GOOD_PW") {
		t.Fatalf("a password reached the on_failure command: %q", h)
	}
	if _, err := os.Stat(hook + ".good"); err == nil {
		t.Fatal("on_failure of a job that worked ran")
	}
	if _, err := os.Stat(filepath.Join(dir, "bad")); err == nil {
		t.Fatal("a failed login created the archive")
	}
	var rep struct {
		Schema  int    `json:"schema"`
		Command string `json:"command"`
		OK      bool   `json:"ok"`
		Jobs    []struct {
			Job      string `json:"job"`
			Status   string `json:"status"`
			Error    string `json:"error"`
			Messages int    `json:"messages"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatalf("--json: %v: %q", err, o)
	}
	if rep.Command != "backup" || rep.OK || len(rep.Jobs) != 2 || rep.Jobs[0].Job != "good" || rep.Jobs[0].Status != "ok" || rep.Jobs[0].Messages != 20 ||
		rep.Jobs[1].Status != "failed" || rep.Jobs[1].Error == "" {
		t.Fatalf("--json: %+v", rep)
	}
	log := logLines(t, logPath)
	if log["good"][0]["new"] != "20" || log["bad"][0]["status"] != "failed" || log["bad"][0]["error"] == "" {
		t.Fatalf("log: %v", log)
	}
}

// TestBackupNoPassword: under cron (no terminal) an account without a
// password setting fails its job with advice, and asks nothing.
func TestBackupNoPassword(t *testing.T) {
	srv := seedServer(t, 3)
	out := filepath.Join(t.TempDir(), "a")
	for _, c := range []struct{ pw, want string }{
		{"", "has no password_file, password_cmd or password_env"},
		{`password_env = "TEST_UNSET_PW"`, "$TEST_UNSET_PW (its password_env) is empty or unset"},
	} {
		cfg := writeConfig(t, fmt.Sprintf("[accounts.mem]\nurl = \"imap://alice@%s?tls=none\"\n%s\n[jobs.mem]\naccount = \"mem\"\nformat = \"eml\"\nout = %q\n", srv.Addr, c.pw, out))
		cmd := exec.Command(binary(t), "backup", "--config", cfg)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal, as under cron
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFailed || !strings.Contains(stderr.String(), c.want) {
			t.Fatalf("%v: %q", err, stderr.String())
		}
	}
}

// TestBackupEncrypted: a job with encrypt_to and compress writes an
// encrypted, compressed archive (no message text, subject or address in any
// file of it), check passes with the identity; --mirror (the writer holding
// only the recipients) moves the message deleted on the server to the
// deleted area without writing anything of it in clear, check passes with
// and without the identity, and import with the identity gives back
// exactly the messages still on the server.
func TestBackupEncrypted(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(t.TempDir(), "id.txt")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"eml", "mbox"} {
		t.Run(format, func(t *testing.T) {
			srv := seedServer(t, 40)
			out := filepath.Join(t.TempDir(), "enc")
			cfg := writeConfig(t, memJob(t, srv.Addr, format, out, fmt.Sprintf("encrypt_to = [%q]\ncompress = \"zstd\"", id.Recipient().String())))
			if _, e, code := runCmdEnv(t, nil, "backup", "--config", cfg); code != 0 {
				t.Fatalf("backup: exit %d %s", code, e)
			}
			noPlaintext := func() {
				t.Helper()
				filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
					if err != nil || fi.IsDir() {
						return err
					}
					b, _ := os.ReadFile(p)
					for _, marker := range []string{"k7@example.org", "s7@example.org", "k4@example.org", "s4@example.org", "From a body line", "Subject: m7"} {
						if bytes.Contains(b, []byte(marker)) {
							t.Errorf("%s holds %q in clear", p, marker)
						}
					}
					return nil
				})
			}
			noPlaintext()
			if o, e, code := runCmd(t, "check", "--identity", idFile, out); code != 0 || !strings.Contains(o, "40 messages") {
				t.Fatalf("check --identity: exit %d %s %s", code, o, e)
			}
			// verify against the server reads it with the identity, and says what to pass without
			from := "imap://alice@" + srv.Addr + "?tls=none"
			if o, e, code := runCmd(t, "verify", "--from", from, "--to", out, "--identity", idFile, "--deep"); code != 0 {
				t.Fatalf("verify --identity: exit %d %s %s", code, o, e)
			}
			if o, e, code := runCmd(t, "verify", "--from", from, "--to", out); code != exitUsage || !strings.Contains(e, "--identity") {
				t.Fatalf("verify without --identity: exit %d %s %s", code, o, e)
			}
			// a message on the server that is not in the archive yet: verify names it (exit 4);
			// the next backup takes it, and verify is clean again
			testmail.Put(t, testmail.MemConfig(t, srv.Addr), []testmail.Msg{{Folder: "Sent", Raw: []byte("From: n@example.org\r\nSubject: new\r\nMessage-ID: <new@example.org>\r\n\r\nnew\r\n")}})
			if o, e, code := runCmd(t, "verify", "--from", from, "--to", out, "--identity", idFile); code != exitDiffers || !strings.Contains(o, "missing: <new@example.org>") {
				t.Fatalf("verify with a message not backed up: exit %d %s %s", code, o, e)
			}
			if _, e, code := runCmdEnv(t, nil, "backup", "--config", cfg); code != 0 {
				t.Fatalf("backup: exit %d %s", code, e)
			}
			if o, e, code := runCmd(t, "verify", "--from", from, "--to", out, "--identity", idFile, "--deep"); code != 0 {
				t.Fatalf("verify after the backup: exit %d %s %s", code, o, e)
			}
			// delete k4 on the server, then --mirror
			u, _ := account.ParseURL("imap://alice@" + srv.Addr + "?tls=none")
			c, err := (&account.Config{URL: u, Password: account.PasswordSource{Env: "MAILMOVE_SEED_PW"}}).Dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			sd, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: "k4@example.org"}}}, nil).Wait()
			if err != nil || len(sd.AllUIDs()) != 1 {
				t.Fatalf("search: %v %v", err, sd)
			}
			if err := c.Store(imap.UIDSetNum(sd.AllUIDs()[0]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			// --mirror moves it to the deleted area, with only the recipients
			if o, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--mirror", "--json"); code != 0 || !strings.Contains(o, `"moved_to_deleted": 1`) {
				t.Fatalf("--mirror on an encrypted archive: exit %d %s %s", code, o, e)
			}
			noPlaintext()
			if ids := archivedIDs(t, out); len(ids["INBOX"]) == 0 {
				t.Fatal("INBOX is empty in the archive")
			}
			a, err := archive.OpenReadOnly(out)
			if err != nil {
				t.Fatal(err)
			}
			if recs, _ := a.Records("INBOX"); len(recs) == 0 || recs[0].MessageID != "" {
				t.Fatalf("without the identity: %+v", recs)
			}
			ids, _ := archive.ReadIdentityFile(idFile)
			if err := a.SetIdentities(ids); err != nil {
				t.Fatal(err)
			}
			del, err := a.DeletedRecords()
			recs, _ := a.Records("INBOX")
			a.Close()
			if err != nil || len(del) != 1 || del[0].MessageID != "k4@example.org" || time.Since(del[0].DeletedAt) > time.Hour {
				t.Fatalf("deleted area: %v %+v", err, del)
			}
			for _, r := range recs {
				if r.MessageID == "k4@example.org" {
					t.Fatal("--mirror left the deleted message in INBOX")
				}
			}
			if format == "eml" && !strings.HasPrefix(del[0].File, ".deleted/"+time.Now().UTC().Format("2006-01-02")+"/INBOX/") {
				t.Fatalf("moved to %s", del[0].File)
			}
			// a second run moves nothing more
			if o, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--mirror", "--json"); code != 0 || strings.Contains(o, `"moved_to_deleted": 1`) {
				t.Fatalf("second --mirror run: exit %d %s %s", code, o, e)
			}
			// check counts the deleted area too: 40 in folders, 1 moved
			if o, e, code := runCmd(t, "check", "--identity", idFile, out); code != 0 || !strings.Contains(o, "41 messages") {
				t.Fatalf("check --identity after --mirror: exit %d %s %s", code, o, e)
			}
			if o, e, code := runCmd(t, "check", out); code != 0 {
				t.Fatalf("check without the identity after --mirror: exit %d %s %s", code, o, e)
			}
			if o, e, code := runCmd(t, "verify", "--from", from, "--to", out, "--identity", idFile, "--deep"); code != 0 {
				t.Fatalf("verify after --mirror: exit %d %s %s", code, o, e)
			}
			want := map[string]bool{}
			for _, ms := range testmail.Held(t, testmail.MemConfig(t, srv.Addr)) {
				for _, m := range ms {
					want[m.Folder+"\x00"+string(m.Raw)] = true
				}
			}
			if len(want) != 40 {
				t.Fatalf("the server holds %d messages", len(want))
			}
			// restore: the 40 messages still on the server (the deleted area is
			// left out, as for a plain archive), exactly
			dst := testmail.Mem(t)
			if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--identity", idFile, "--to", "imap://alice@"+dst.Addr+"?tls=none", out); code != 0 {
				t.Fatalf("import --identity: exit %d %s", code, e)
			}
			n := 0
			for _, ms := range testmail.Held(t, testmail.MemConfig(t, dst.Addr)) {
				for _, m := range ms {
					n++
					if !want[m.Folder+"\x00"+string(m.Raw)] {
						t.Errorf("restored a message the server did not hold in %s", m.Folder)
					}
				}
			}
			if n != len(want) {
				t.Errorf("restored %d messages, the server held %d", n, len(want))
			}
		})
	}
}

// TestBackupMirror: a message deleted on the server stays in the archive;
// with --mirror (or mirror = true) it moves to the deleted area, with the
// date, and check still finds every byte.
func TestBackupMirror(t *testing.T) {
	for _, format := range []string{"eml", "mbox"} {
		t.Run(format, func(t *testing.T) {
			srv := seedServer(t, 40)
			out := filepath.Join(t.TempDir(), "a")
			cfg := writeConfig(t, memJob(t, srv.Addr, format, out, ""))
			if _, e, code := runCmdEnv(t, nil, "backup", "--config", cfg); code != 0 {
				t.Fatal(e)
			}
			// delete k5 (in INBOX) on the server
			u, _ := account.ParseURL("imap://alice@" + srv.Addr + "?tls=none")
			c, err := (&account.Config{URL: u, Password: account.PasswordSource{Env: "MAILMOVE_SEED_PW"}}).Dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			sd, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: "k4@example.org"}}}, nil).Wait()
			if err != nil || len(sd.AllUIDs()) != 1 {
				t.Fatalf("search: %v %v", err, sd)
			}
			uid := sd.AllUIDs()[0]
			if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			inInbox := func() bool {
				return strings.Contains(strings.Join(archivedIDs(t, out)["INBOX"], " "), "k4@example.org")
			}
			// Retention: without --mirror the message stays.
			if _, e, code := runCmdEnv(t, nil, "backup", "--config", cfg); code != 0 || !inInbox() {
				t.Fatalf("without --mirror: exit %d %s; still in INBOX: %v", code, e, inInbox())
			}
			o, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--mirror", "--json")
			if code != 0 || !strings.Contains(o, `"moved_to_deleted": 1`) {
				t.Fatalf("--mirror: exit %d %s %s", code, o, e)
			}
			if inInbox() {
				t.Fatal("--mirror left the deleted message in INBOX")
			}
			a, err := archive.OpenReadOnly(out)
			if err != nil {
				t.Fatal(err)
			}
			del, err := a.DeletedRecords()
			a.Close()
			if err != nil || len(del) != 1 || del[0].MessageID != "k4@example.org" || del[0].UID != uint32(uid) || time.Since(del[0].DeletedAt) > time.Hour {
				t.Fatalf("deleted area: %v %+v", err, del)
			}
			if format == "eml" {
				day := time.Now().UTC().Format("2006-01-02")
				if !strings.HasPrefix(del[0].File, ".deleted/"+day+"/INBOX/") {
					t.Fatalf("moved to %s", del[0].File)
				}
				if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(del[0].File))); err != nil {
					t.Fatal(err)
				}
			}
			// the deleted area of an .eml archive imports (README):
			// OUT/.deleted is read through deleted.jsonl, into its folder or
			// the one --folder names, with its flags (an mbox archive has no
			// .deleted folder: the bytes stay in the mbox)
			for _, folder := range []string{"Restored", ""} {
				if format != "eml" {
					break
				}
				dst := testmail.Mem(t)
				args := []string{"import", "--to", "imap://alice@" + dst.Addr + "?tls=none", filepath.Join(out, ".deleted")}
				if folder != "" {
					args = append(args, "--folder", folder)
				}
				if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, args...); code != 0 {
					t.Fatalf("import of .deleted: %d %s", code, e)
				}
				want := folder
				if want == "" {
					want = "INBOX"
				}
				held := testmail.Held(t, testmail.MemConfig(t, dst.Addr))
				n := 0
				for _, ms := range held {
					n += len(ms)
				}
				if n != 1 || len(held[want]) != 1 || !strings.Contains(string(held[want][0].Raw), "k4@example.org") || !slices.Contains(held[want][0].Flags, imap.FlagSeen) || !held[want][0].Date.Equal(time.Unix(1700000000+4*60, 0)) {
					t.Fatalf("restored from .deleted: %+v", held)
				}
			}
			// every byte still checks, the moved message included
			o, e, code = runCmd(t, "check", out)
			if code != 0 || !strings.Contains(o, "40 messages") {
				t.Fatalf("check: %d %s %s", code, o, e)
			}
			// and a second mirror run moves nothing more
			if o, _, _ := runCmdEnv(t, nil, "backup", "--config", cfg, "--mirror", "--json"); strings.Contains(o, `"moved_to_deleted": 1`) {
				t.Fatalf("second --mirror run: %s", o)
			}
		})
	}
}
