package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/gmailstub"
	"github.com/mailmove/mailmove/internal/testmail"
)

func gmailSeed(s *gmailstub.Server) {
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	s.Add(gmailstub.Mail("c1@x", "inbox", 3000), d, 0, []string{`\Inbox`, "Work", `\Important`})
	s.Add(gmailstub.Mail("c2@x", "sent", 3000), d, 0, []string{`\Sent`, "Work"})
	s.Add(gmailstub.Mail("c3@x", "label", 3000), d, 0, []string{"Work", "Alpha"})
	s.Add(gmailstub.Mail("c4@x", "archived", 3000), d, 0, nil)
	s.Add(gmailstub.Mail("c5@x", "spam", 3000), d, 0, []string{`\Spam`})
	s.Add(gmailstub.Mail("c6@x", "trash", 3000), d, 0, []string{`\Trash`})
}

// TestGmailCountsAgree: folders --json, export --json and check --json give
// the same counts on the Gmail stand-in, each message once.
func TestGmailCountsAgree(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(s)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password}
	from := []string{"--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile}
	stdout, stderr, code := runCmdEnv(t, env, append([]string{"folders", "--json"}, from...)...)
	if code != 0 {
		t.Fatalf("folders: exit %d: %s", code, stderr)
	}
	var f struct {
		Folders []struct {
			Folder   string `json:"folder"`
			Exported int    `json:"exported"`
		} `json:"folders"`
		Messages int `json:"messages"`
	}
	if err := json.Unmarshal([]byte(stdout), &f); err != nil {
		t.Fatal(err)
	}
	if f.Messages != 6 {
		t.Fatalf("folders counts %d messages, want 6: %s", f.Messages, stdout)
	}
	out := t.TempDir()
	stdout, stderr, code = runCmdEnv(t, env, append([]string{"export", "--to", "mbox", "--out", out, "--json"}, from...)...)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	var e struct {
		Folders  int  `json:"folders"`
		Messages int  `json:"messages"`
		Gmail    bool `json:"gmail"`
	}
	if err := json.Unmarshal([]byte(stdout), &e); err != nil {
		t.Fatal(err)
	}
	if !e.Gmail || e.Messages != f.Messages || e.Folders != len(f.Folders) {
		t.Fatalf("export: %+v; folders said %d messages in %d folders", e, f.Messages, len(f.Folders))
	}
	stdout, stderr, code = runCmd(t, "check", "--json", out)
	var c struct {
		Folders  int `json:"folders"`
		Messages int `json:"messages"`
	}
	if err := json.Unmarshal([]byte(stdout), &c); err != nil || code != 0 {
		t.Fatalf("check: exit %d %v: %s %s", code, err, stdout, stderr)
	}
	if c.Messages != e.Messages || c.Folders != e.Folders {
		t.Fatalf("check: %+v, export: %+v", c, e)
	}
}

// TestGmailDailyCapExitCode: [OVERQUOTA] stops an export with exit code 6 (exitDailyCap)
// and daily_cap_reached; the next day's run finishes, nothing fetched twice.
// --max-bytes-per-day stops before the budget, counting earlier runs of the
// day (kept in the state dir).
func TestGmailDailyCapExitCode(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{DownloadCap: 7000})
	gmailSeed(s)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password}
	from := []string{"--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile}
	out := t.TempDir()
	stdout, stderr, code := runCmdEnv(t, env, append([]string{"export", "--to", "eml", "--out", out, "--json"}, from...)...)
	if code != exitDailyCap {
		t.Fatalf("exit %d, want %d: %s", code, exitDailyCap, stderr)
	}
	var e struct {
		Messages int  `json:"messages"`
		Cap      bool `json:"daily_cap_reached"`
	}
	if err := json.Unmarshal([]byte(stdout), &e); err != nil || !e.Cap || e.Messages != 2 {
		t.Fatalf("json %s: %v", stdout, err)
	}
	s.SetCaps(0, 0)
	if _, stderr, code = runCmdEnv(t, env, append([]string{"export", "--to", "eml", "--out", out}, from...)...); code != 0 {
		t.Fatalf("re-run: exit %d: %s", code, stderr)
	}
	for id, n := range s.Stats().Served {
		if n != 1 {
			t.Errorf("message %d served %d times", id, n)
		}
	}

	// --max-bytes-per-day, two runs on one day sharing the state dir
	s2 := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(s2)
	env2 := append(env, "XDG_STATE_HOME="+t.TempDir())
	from2 := []string{"--from", "imaps://alice@gmail.com@" + s2.Addr, "--from-ca-file", s2.CAFile, "--max-bytes-per-day", "10000"}
	out2 := t.TempDir()
	for i := 0; i < 2; i++ {
		if _, stderr, code = runCmdEnv(t, env2, append([]string{"export", "--to", "eml", "--out", out2}, from2...)...); code != exitDailyCap {
			t.Fatalf("run %d: exit %d, want %d: %s", i, code, exitDailyCap, stderr)
		}
		if served := s2.Stats().BytesServed; served > 10000 || served == 0 {
			t.Fatalf("run %d: %d bytes served under a budget of 10000", i, served)
		}
	}
}

// TestGmailImportCommand: a Gmail archive into another Gmail account with
// import: --max-bytes-per-day stops it (exit 6) before the budget is
// crossed; the next run without it finishes, each message once, labels set.
func TestGmailImportCommand(t *testing.T) {
	src := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(src)
	out := t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=" + gmailstub.Password}
	if _, stderr, code := runCmdEnv(t, env, "export", "--from", "imaps://alice@gmail.com@"+src.Addr, "--from-ca-file", src.CAFile, "--to", "eml", "--out", out); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	dst := gmailstub.StartT(t, gmailstub.Options{})
	state, jdir := t.TempDir(), t.TempDir()
	env = append(env, "XDG_STATE_HOME="+state)
	to := []string{"--to", "imaps://alice@gmail.com@" + dst.Addr, "--to-ca-file", dst.CAFile, "--journal-dir", jdir}
	stdout, stderr, code := runCmdEnv(t, env, append(append([]string{"import", "--json", "--max-bytes-per-day", "7000"}, to...), out)...)
	if code != exitDailyCap {
		t.Fatalf("import with a budget: exit %d, want %d: %s %s", code, exitDailyCap, stdout, stderr)
	}
	if b := dst.Stats().BytesAppended; b > 7000 || b == 0 {
		t.Fatalf("%d bytes appended under a budget of 7000", b)
	}
	stdout, stderr, code = runCmdEnv(t, env, append(append([]string{"import", "--json"}, to...), out)...)
	if code != 0 {
		t.Fatalf("import: exit %d: %s %s", code, stdout, stderr)
	}
	var sum struct {
		Gmail bool `json:"gmail"`
	}
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || !sum.Gmail {
		t.Fatalf("json %s: %v", stdout, err)
	}
	want := map[string]bool{}
	for _, m := range src.Messages() {
		want[fmt.Sprint(len(m.Body), m.Labels)] = true
	}
	got := dst.Messages()
	if len(got) != len(want) {
		t.Fatalf("%d messages on the target, want %d", len(got), len(want))
	}
	for _, m := range got {
		if !want[fmt.Sprint(len(m.Body), m.Labels)] {
			t.Errorf("message of %d bytes with labels %v is not the source's", len(m.Body), m.Labels)
		}
	}
}

// TestGmailOAuthExport: an OAuth2 account (a token from --from-oauth-token-cmd)
// exports from the Gmail stand-in, which accepts only the right token over
// XOAUTH2, on every connection (go-imap's, the metadata pass's); the token
// appears nowhere in the output, --debug-imap included.
func TestGmailOAuthExport(t *testing.T) {
	const token = "ya29.secret-gmail-token-4711"
	s := gmailstub.StartT(t, gmailstub.Options{Token: token})
	gmailSeed(s)
	out := t.TempDir()
	stdout, stderr, code := runCmd(t, "export", "--from", "imaps://alice@gmail.com@"+s.Addr+"?auth=oauth", "--from-ca-file", s.CAFile,
		"--from-oauth-token-cmd", "echo "+token, "--to", "eml", "--out", out, "--json", "--debug-imap")
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	if strings.Contains(stdout+stderr, token) {
		t.Fatal("the access token appears in the output")
	}
	if !strings.Contains(stderr, "AUTHENTICATE") {
		t.Fatalf("--debug-imap shows no sign-in:\n%s", stderr)
	}
	var e struct {
		Messages int `json:"messages"`
	}
	if err := json.Unmarshal([]byte(stdout), &e); err != nil || e.Messages != 6 {
		t.Fatalf("json %s: %v (want 6 messages)", stdout, err)
	}
	// a wrong token is refused with the advice of a sign-in problem, exit 1
	_, stderr, code = runCmd(t, "export", "--from", "imaps://alice@gmail.com@"+s.Addr+"?auth=oauth", "--from-ca-file", s.CAFile,
		"--from-oauth-token-cmd", "echo wrong-token", "--to", "eml", "--out", t.TempDir())
	if code != exitFailed {
		t.Fatalf("wrong token: exit %d: %s", code, stderr)
	}
}

// TestGmailMigrateRefused: migrate from a Gmail account (which the copy
// engine would take label by label) stops before copying anything, exit 2,
// and says how to take each message once (export, then import).
func TestGmailMigrateRefused(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(s)
	dst := testmail.Mem(t)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=secret"}
	_, stderr, code := runCmdEnv(t, env, "migrate", "--from", "imaps://alice@gmail.com@"+s.Addr, "--from-ca-file", s.CAFile,
		"--to", "imap://alice@"+dst.Addr+"?tls=none")
	if code != exitUsage || !strings.Contains(stderr, "is a Gmail account") || !strings.Contains(stderr, "mailmove export --from") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if held := testmail.Held(t, testmail.MemConfig(t, dst.Addr)); len(held) != 0 {
		t.Fatalf("the target got messages: %v", held)
	}
}
