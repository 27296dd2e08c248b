package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/message"

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

// gmailHeld is what a target holds, by Message-ID: folders, flags (sorted)
// and the SHA-256 of each copy's bytes.
type gmailHeldMsg struct {
	folders []string
	flags   []string
	sums    [][32]byte
}

func heldByID(t *testing.T, held map[string][]testmail.Msg) map[string]*gmailHeldMsg {
	t.Helper()
	out := map[string]*gmailHeldMsg{}
	for f, msgs := range held {
		for _, m := range msgs {
			id, _, _ := message.HeaderFields(bufio.NewReader(bytes.NewReader(m.Raw)))
			h := out[id]
			if h == nil {
				h = &gmailHeldMsg{}
				out[id] = h
			}
			h.folders = append(h.folders, f)
			h.sums = append(h.sums, sha256.Sum256(m.Raw))
			h.flags = nil
			for _, x := range m.Flags {
				h.flags = append(h.flags, string(x))
			}
			sort.Strings(h.flags)
		}
	}
	return out
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestGmailMigrateToDovecot: migrate from the Gmail stand-in into Dovecot
// takes each message once (by X-GM-MSGID), into the folder export's rule
// chooses, byte for byte, its labels as keywords (\Important as
// $Important, \Starred as \Flagged). A re-run copies nothing; a new
// message and a label changed on Gmail (one that would choose another
// folder now) are brought by the next run: the new one copied, the
// changed one's keywords updated on its one copy, nothing copied twice.
func TestGmailMigrateToDovecot(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(s)
	starred := s.Add(gmailstub.Mail("c7@x", "starred", 3000), time.Date(2025, 4, 8, 10, 0, 0, 0, time.UTC), 0, []string{`\Inbox`, `\Starred`, "Big Project"}, `\Seen`)
	d := testmail.StartDovecot(t)
	state := "XDG_STATE_HOME=" + t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=pw", state}
	args := []string{"migrate", "--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile,
		"--to", "imaps://dst@" + d.TLSAddr, "--to-ca-file", filepath.Join(d.Dir, "cert.pem"), "--json"}
	o, e, code := runCmdEnv(t, env, args...)
	var v migrateJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Copied != 7 {
		t.Fatalf("migrate: exit %d %v %s %s", code, err, o, e)
	}
	dst := d.Config(t, "imaps", "dst")
	held := heldByID(t, testmail.Held(t, dst))
	want := map[string]string{"c1@x": "INBOX", "c2@x": "Sent", "c3@x": "Alpha", "c4@x": "Archive", "c5@x": "Junk", "c6@x": "Trash", "c7@x": "INBOX"}
	if len(held) != len(want) {
		t.Fatalf("%d messages at the target, want %d: %v", len(held), len(want), held)
	}
	src := map[string][32]byte{}
	for _, m := range s.Messages() {
		id, _, _ := message.HeaderFields(bufio.NewReader(bytes.NewReader(m.Body)))
		src[id] = sha256.Sum256(m.Body)
	}
	for id, f := range want {
		h := held[id]
		if h == nil || len(h.folders) != 1 || h.folders[0] != f {
			t.Fatalf("%s: at the target in %v, want once in %s", id, h, f)
		}
		if h.sums[0] != src[id] {
			t.Errorf("%s: the copy differs from Gmail's bytes", id)
		}
	}
	if f := held["c1@x"].flags; !has(f, "Work") || !has(f, "$Important") || has(f, "INBOX") {
		t.Errorf("c1 flags %v, want the keywords Work and $Important", f)
	}
	if f := held["c3@x"].flags; !has(f, "Work") || has(f, "Alpha") {
		t.Errorf("c3 (in Alpha) flags %v, want Work only as a keyword", f)
	}
	if f := held["c7@x"].flags; !has(f, `\Flagged`) || !has(f, `\Seen`) || !has(f, "Big_Project") {
		t.Errorf("c7 flags %v, want \\Flagged \\Seen Big_Project", f)
	}
	// a re-run copies nothing
	o, e, code = runCmdEnv(t, env, args...)
	v = migrateJSON{}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || v.Copied != 0 || v.FlagsUpdated != 0 {
		t.Fatalf("re-run: exit %d %v %s %s", code, err, o, e)
	}
	// new mail, and labels changed: c3 gets "Aardvark" (which sorts first:
	// export's rule would choose it now), c7 is unstarred, c2 is moved to
	// the Trash (found there under another UID): each stays where it was
	// copied, with its keywords brought up to date
	s.Add(gmailstub.Mail("c8@x", "new", 2000), time.Date(2025, 4, 9, 10, 0, 0, 0, time.UTC), 0, []string{`\Inbox`})
	for _, m := range s.Messages() {
		if strings.Contains(string(m.Body), "<c3@x>") {
			s.Relabel(m.MsgID, []string{"Work", "Alpha", "Aardvark"})
		}
		if strings.Contains(string(m.Body), "<c2@x>") {
			s.Relabel(m.MsgID, []string{`\Trash`})
		}
	}
	s.Relabel(starred, []string{`\Inbox`, "Big Project"}, `\Seen`)
	o, e, code = runCmdEnv(t, env, args...)
	v = migrateJSON{}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || v.Copied != 1 || v.FlagsUpdated != 3 {
		t.Fatalf("third run: exit %d %v %s %s", code, err, o, e)
	}
	held = heldByID(t, testmail.Held(t, dst))
	if len(held) != 8 {
		t.Fatalf("%d messages at the target, want 8", len(held))
	}
	if h := held["c3@x"]; len(h.folders) != 1 || h.folders[0] != "Alpha" || !has(h.flags, "Aardvark") || !has(h.flags, "Work") {
		t.Errorf("c3 after its new label: %v %v", h.folders, h.flags)
	}
	if h := held["c7@x"]; len(h.folders) != 1 || has(h.flags, `\Flagged`) || !has(h.flags, "Big_Project") {
		t.Errorf("c7 after unstarring: %v %v", h.folders, h.flags)
	}
	if h := held["c2@x"]; len(h.folders) != 1 || h.folders[0] != "Sent" || has(h.flags, "Work") {
		t.Errorf("c2 after its move to the Trash: %v %v", h.folders, h.flags)
	}
	if h := held["c8@x"]; h == nil || h.folders[0] != "INBOX" {
		t.Errorf("c8 not in INBOX: %v", h)
	}
	for id, n := range s.Stats().Served {
		if n != 1 {
			t.Errorf("message %d served %d times", id, n)
		}
	}
}

// TestGmailMigrateBridgeToGmail: migrate from the Proton Mail Bridge
// stand-in into the Gmail stand-in: each copy is one APPEND into its
// mapped folder, the Proton labels (Important, Travel) and Starred are set
// with UID STORE +X-GM-LABELS (from APPENDUID), never copied into label
// folders; a re-run appends nothing.
func TestGmailMigrateBridgeToGmail(t *testing.T) {
	br := testmail.StartBridge(t, 16)
	g := gmailstub.StartT(t, gmailstub.Options{})
	state := "XDG_STATE_HOME=" + t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=" + testmail.BridgePassword, "MAILMOVE_TO_PASSWORD=" + gmailstub.Password, state}
	args := []string{"migrate", "--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem"),
		"--to", "imaps://alice@gmail.com@" + g.Addr, "--to-ca-file", g.CAFile, "--json"}
	o, e, code := runCmdEnv(t, env, args...)
	var v migrateJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil || (code != 0 && code != 3) || v.Copied == 0 || len(v.Failed) != 0 {
		t.Fatalf("migrate: exit %d %v %s %s", code, err, o, e)
	}
	var expected []struct {
		PMID    string   `json:"pm_id"`
		Folder  string   `json:"folder"`
		Labels  []string `json:"labels"`
		Starred bool     `json:"starred"`
	}
	b, err := os.ReadFile(filepath.Join(br.Dir, "expected.json"))
	if err != nil || json.Unmarshal(b, &expected) != nil {
		t.Fatalf("expected.json: %v", err)
	}
	byID := map[string]gmailstub.Message{}
	for _, m := range g.Messages() {
		id, _, _ := message.HeaderFields(bufio.NewReader(bytes.NewReader(m.Body)))
		byID[id] = m
	}
	if len(byID) != len(expected) || len(g.Messages()) != len(expected) {
		t.Fatalf("%d messages (%d Message-IDs) on Gmail, want %d", len(g.Messages()), len(byID), len(expected))
	}
	for _, x := range expected {
		m, ok := byID[x.PMID+"@protonmail.internalid"]
		if !ok {
			t.Fatalf("%s is not on Gmail", x.PMID)
		}
		for _, l := range x.Labels {
			if l == "Starred" {
				l = `\Starred`
			}
			if !m.Labels[l] {
				t.Errorf("%s (%s): labels %v, want %s", x.PMID, x.Folder, m.Labels, l)
			}
		}
		if x.Folder == "INBOX" && !m.Labels[`\Inbox`] {
			t.Errorf("%s: not in the Inbox: %v", x.PMID, m.Labels)
		}
		if x.Folder == "All Mail" && len(m.Labels) != 0 {
			t.Errorf("%s (only in All Mail): labels %v, want none (Gmail's All Mail)", x.PMID, m.Labels)
		}
	}
	st := g.Stats()
	if st.LabelStores == 0 {
		t.Fatal("no UID STORE +X-GM-LABELS")
	}
	// a re-run appends nothing
	o, e, code = runCmdEnv(t, env, args...)
	v = migrateJSON{}
	if err := json.Unmarshal([]byte(o), &v); err != nil || (code != 0 && code != 3) || v.Copied != 0 {
		t.Fatalf("re-run: exit %d %v %s %s", code, err, o, e)
	}
	if g.Stats().Appends != st.Appends {
		t.Fatalf("the re-run appended %d messages", g.Stats().Appends-st.Appends)
	}
}

// TestGmailMigrateCapResume: Gmail's daily download cap met mid-migrate
// ([OVERQUOTA] on a FETCH, or a BYE about bandwidth that go-imap sees as a
// closed connection) stops the run cleanly with exit 6; the next day's run
// completes, nothing fetched or copied twice.
func TestGmailMigrateCapResume(t *testing.T) {
	for _, bye := range []bool{false, true} {
		t.Run(fmt.Sprint("bye=", bye), func(t *testing.T) {
			s := gmailstub.StartT(t, gmailstub.Options{DownloadCap: 7000, ByeOnCap: bye})
			gmailSeed(s)
			dst := testmail.Mem(t)
			state := "XDG_STATE_HOME=" + t.TempDir()
			env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=secret", state}
			args := []string{"migrate", "--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile,
				"--to", "imap://alice@" + dst.Addr + "?tls=none", "--connections", "1"}
			_, e, code := runCmdEnv(t, env, args...)
			if code != exitDailyCap || !strings.Contains(e, "daily download cap") {
				t.Fatalf("exit %d, want %d: %s", code, exitDailyCap, e)
			}
			if n := len(heldByID(t, testmail.Held(t, testmail.MemConfig(t, dst.Addr)))); n == 0 || n >= 6 {
				t.Fatalf("%d messages copied before the cap", n)
			}
			s.SetCaps(0, 0)
			if _, e, code = runCmdEnv(t, env, args...); code != 0 {
				t.Fatalf("re-run: exit %d: %s", code, e)
			}
			held := heldByID(t, testmail.Held(t, testmail.MemConfig(t, dst.Addr)))
			if len(held) != 6 {
				t.Fatalf("%d messages at the target, want 6", len(held))
			}
			for id, h := range held {
				if len(h.folders) != 1 {
					t.Errorf("%s at the target %d times: %v", id, len(h.folders), h.folders)
				}
			}
			for id, n := range s.Stats().Served {
				if n != 1 {
					t.Errorf("message %d served %d times", id, n)
				}
			}
		})
	}
}

// TestGmailMigrateKillResume: migrate from Gmail killed (SIGKILL) at random
// moments, then run to the end: every message at the target exactly once.
func TestGmailMigrateKillResume(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	labels := [][]string{{`\Inbox`}, {`\Sent`}, {"Work"}, {"Work", "Alpha"}, nil, {`\Inbox`, `\Starred`}}
	for i := 0; i < 600; i++ {
		s.Add(gmailstub.Mail(fmt.Sprintf("k%d@x", i), fmt.Sprint("kill ", i), 2000+i*7), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Hour), 0, labels[i%len(labels)])
	}
	dst := testmail.MemStrict(t)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=secret", "XDG_STATE_HOME=" + t.TempDir()}
	args := []string{"migrate", "--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile,
		"--to", "imap://alice@" + slowProxy(t, dst.Addr) + "?tls=none"}
	kills := killRuns(t, 8, 5, env, args...)
	before := len(heldByID(t, testmail.Held(t, testmail.MemConfig(t, dst.Addr))))
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("final run: exit %d: %s", code, e)
	}
	held := heldByID(t, testmail.Held(t, testmail.MemConfig(t, dst.Addr)))
	if len(held) != 600 {
		t.Fatalf("%d messages at the target, want 600 (after %d kills)", len(held), kills)
	}
	for id, h := range held {
		if len(h.folders) != 1 {
			t.Errorf("%s at the target %d times: %v", id, len(h.folders), h.folders)
		}
	}
	t.Logf("%d runs killed, %d messages copied by them", kills, before)
}

// TestGmailMigrateGmailToGmail: from one Gmail account into another: one
// APPEND per message into its folder, its other labels (\Important and
// user labels) set with UID STORE +X-GM-LABELS: the target ends with the
// source's labels, each message once.
func TestGmailMigrateGmailToGmail(t *testing.T) {
	src := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(src)
	dst := gmailstub.StartT(t, gmailstub.Options{})
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=" + gmailstub.Password, "XDG_STATE_HOME=" + t.TempDir()}
	args := []string{"migrate", "--from", "imaps://alice@gmail.com@" + src.Addr, "--from-ca-file", src.CAFile,
		"--to", "imaps://alice@gmail.com@" + dst.Addr, "--to-ca-file", dst.CAFile}
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, e)
	}
	want := map[string]bool{}
	for _, m := range src.Messages() {
		want[fmt.Sprint(len(m.Body), m.Labels)] = true
	}
	got := dst.Messages()
	if len(got) != len(want) || dst.Stats().Appends != len(want) {
		t.Fatalf("%d messages, %d APPENDs on the target, want %d", len(got), dst.Stats().Appends, len(want))
	}
	for _, m := range got {
		if !want[fmt.Sprint(len(m.Body), m.Labels)] {
			t.Errorf("message of %d bytes with labels %v is not the source's", len(m.Body), m.Labels)
		}
	}
}

// TestGmailMigrateUploadCapAndAppendLimit: into Gmail, the daily upload
// cap met mid-migrate ([OVERQUOTA] on an APPEND) stops with exit 6 and the
// next run appends only what is missing (no APPEND twice); a message over
// the target's APPENDLIMIT is reported (exit 3) and never sent.
func TestGmailMigrateUploadCapAndAppendLimit(t *testing.T) {
	src := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(src)
	src.Add(gmailstub.Mail("big@x", "big", 9000), time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC), 0, []string{`\Inbox`})
	dst := gmailstub.StartT(t, gmailstub.Options{UploadCap: 7000, AppendLimit: 8000})
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=" + gmailstub.Password, "XDG_STATE_HOME=" + t.TempDir()}
	args := []string{"migrate", "--from", "imaps://alice@gmail.com@" + src.Addr, "--from-ca-file", src.CAFile,
		"--to", "imaps://alice@gmail.com@" + dst.Addr, "--to-ca-file", dst.CAFile, "--connections", "1"}
	_, e, code := runCmdEnv(t, env, args...)
	if code != exitDailyCap || !strings.Contains(e, "daily upload cap") {
		t.Fatalf("exit %d, want %d: %s", code, exitDailyCap, e)
	}
	first := dst.Stats().Appends
	if first == 0 || first >= 6 {
		t.Fatalf("%d APPENDs before the cap", first)
	}
	dst.SetCaps(0, 0)
	_, e, code = runCmdEnv(t, env, args...)
	if code != exitPartial || !strings.Contains(e, "APPENDLIMIT") {
		t.Fatalf("re-run: exit %d, want %d (the big one reported): %s", code, exitPartial, e)
	}
	if n := dst.Stats().Appends; n != 6 || len(dst.Messages()) != 6 {
		t.Fatalf("%d APPENDs in all, %d messages on the target; want 6 each", n, len(dst.Messages()))
	}
	for _, m := range dst.Messages() {
		if len(m.Body) > 8000 {
			t.Fatal("the message over APPENDLIMIT was sent")
		}
	}
}

// TestGmailMigrateLabelModes: --dry-run from Gmail shows the folders and
// copies nothing; --labels skip leaves the labels behind (\Flagged kept);
// --labels folders copies every label's mailbox as a folder.
func TestGmailMigrateLabelModes(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(s)
	s.Add(gmailstub.Mail("c7@x", "starred", 3000), time.Date(2025, 4, 8, 10, 0, 0, 0, time.UTC), 0, []string{`\Inbox`, `\Starred`, "Work"})
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password, "MAILMOVE_TO_PASSWORD=secret", "XDG_STATE_HOME=" + t.TempDir()}
	from := []string{"migrate", "--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile}
	dst := testmail.Mem(t)
	to := []string{"--to", "imap://alice@" + dst.Addr + "?tls=none"}
	o, e, code := runCmdEnv(t, env, append(append(from, to...), "--dry-run")...)
	if code != 0 || !strings.Contains(o, "INBOX") || !strings.Contains(o, "Alpha") {
		t.Fatalf("dry run: exit %d %s %s", code, o, e)
	}
	if n := len(heldByID(t, testmail.Held(t, testmail.MemConfig(t, dst.Addr)))); n != 0 {
		t.Fatalf("the dry run copied %d messages", n)
	}
	if _, e, code = runCmdEnv(t, env, append(append(from, to...), "--labels", "skip")...); code != 0 {
		t.Fatalf("--labels skip: exit %d %s", code, e)
	}
	held := heldByID(t, testmail.Held(t, testmail.MemConfig(t, dst.Addr)))
	if f := held["c1@x"].flags; has(f, "Work") || has(f, "$Important") {
		t.Errorf("--labels skip: c1 has %v", f)
	}
	if f := held["c7@x"].flags; !has(f, `\Flagged`) || has(f, "Work") {
		t.Errorf("--labels skip: c7 has %v, want \\Flagged alone", f)
	}
	dst2 := testmail.Mem(t)
	to2 := []string{"--to", "imap://alice@" + dst2.Addr + "?tls=none", "--labels", "folders"}
	if _, e, code = runCmdEnv(t, env, append(from, to2...)...); code != 0 {
		t.Fatalf("--labels folders: exit %d %s", code, e)
	}
	held = heldByID(t, testmail.Held(t, testmail.MemConfig(t, dst2.Addr)))
	if h := held["c3@x"]; h == nil || !has(h.folders, "Work") || !has(h.folders, "Alpha") {
		t.Errorf("--labels folders: c3 in %v, want Work and Alpha among them", h)
	}
}

// TestGmailVerify: verify compares a Gmail account with its export the
// way export stores it (each message once, in the folder its labels
// choose), so a complete export verifies clean, cheap and deep; a message
// on Gmail that is not in the archive yet is named.
func TestGmailVerify(t *testing.T) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	gmailSeed(s)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + gmailstub.Password}
	from := []string{"--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile}
	out := t.TempDir()
	if _, stderr, code := runCmdEnv(t, env, append([]string{"export", "--to", "eml", "--out", out}, from...)...); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	}
	for _, extra := range [][]string{nil, {"--deep"}} {
		if o, e, code := runCmdEnv(t, env, append(append([]string{"verify", "--to", out}, from...), extra...)...); code != 0 || !strings.Contains(o, "6 matched") {
			t.Fatalf("verify %v: exit %d %s %s", extra, code, o, e)
		}
	}
	// a message on Gmail that the archive does not have yet is named
	s.Add(gmailstub.Mail("c7@x", "new", 3000), time.Date(2025, 4, 8, 10, 0, 0, 0, time.UTC), 0, []string{"Zeta"})
	if o, e, code := runCmdEnv(t, env, append([]string{"verify", "--to", out}, from...)...); code != exitDiffers || !strings.Contains(o, "missing: <c7@x>") {
		t.Fatalf("verify with a message not exported yet: exit %d %s %s", code, o, e)
	}
}
