package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/testmail"
)

func TestMigrate(t *testing.T) {
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(40, []string{"INBOX", "Sent", "Archive/2024"}, 3))
	dst := testmail.Mem(t)
	state := "XDG_STATE_HOME=" + t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret", state}
	args := []string{"migrate", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", "imap://alice@" + dst.Addr + "?tls=none"}
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("migrate: %d %s", code, e)
	}
	want := messageIDs(t, src.Addr)
	got := messageIDs(t, dst.Addr)
	for f, ids := range want {
		if len(got[f]) != len(ids) {
			t.Fatalf("%s: %d messages, want %d", f, len(got[f]), len(ids))
		}
	}
	// new mail on the old account: the next run moves just that
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(1, []string{"Sent"}, 99))
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("second migrate: %d %s", code, e)
	}
	if got := messageIDs(t, dst.Addr); len(got["Sent"]) != len(want["Sent"])+1 || len(got["INBOX"]) != len(want["INBOX"]) {
		t.Fatalf("after the second run: Sent %d, INBOX %d", len(got["Sent"]), len(got["INBOX"]))
	}
}

// migrateJSON is the part of migrate --json the tests read.
type migrateJSON struct {
	Schema        int               `json:"schema"`
	Command       string            `json:"command"`
	OK            bool              `json:"ok"`
	DryRun        bool              `json:"dry_run"`
	Copied        int               `json:"copied"`
	AlreadyThere  int               `json:"already_there"`
	FlagsUpdated  int               `json:"flags_updated"`
	Deleted       int               `json:"deleted"`
	Undecryptable []json.RawMessage `json:"undecryptable"`
	Failed        []json.RawMessage `json:"failed"`
	Unstorable    []string          `json:"unstorable_keywords"`
	Folders       []struct {
		Source string `json:"source"`
		Target string `json:"target"`
		Copy   int    `json:"copy"`
	} `json:"folders"`
	Check struct {
		Folders   int               `json:"folders"`
		Messages  int               `json:"messages"`
		Unchanged int               `json:"unchanged"`
		Missing   []json.RawMessage `json:"missing"`
	} `json:"check"`
}

// migrate has --dry-run and --json, like export and import.
func TestMigrateDryRunAndJSON(t *testing.T) {
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(12, []string{"INBOX", "Sent"}, 4))
	dst := testmail.Mem(t)
	state := "XDG_STATE_HOME=" + t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret", state}
	args := []string{"migrate", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", "imap://alice@" + dst.Addr + "?tls=none"}
	o, e, code := runCmdEnv(t, env, append(args, "--dry-run")...)
	if code != 0 || !strings.Contains(o, "TARGET FOLDER") || !strings.Contains(o, "Sent") {
		t.Fatalf("dry run: exit %d %q %q", code, o, e)
	}
	for f, ids := range messageIDs(t, dst.Addr) {
		if len(ids) > 0 {
			t.Fatalf("the dry run appended %d messages into %s", len(ids), f)
		}
	}
	o, e, code = runCmdEnv(t, env, append(args, "--dry-run", "--json")...)
	var v migrateJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || v.Schema != 1 || v.Command != "migrate" || !v.DryRun {
		t.Fatalf("dry run --json: exit %d %v %q %q", code, err, o, e)
	}
	n := 0
	for _, f := range v.Folders {
		n += f.Copy
	}
	if n != 12 || v.Copied != 0 {
		t.Fatalf("dry run plans %d copies (copied %d), want 12 (0)", n, v.Copied)
	}
	o, e, code = runCmdEnv(t, env, append(args, "--json")...)
	v = migrateJSON{}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Copied != 12 || e != "" || v.Check.Messages != 12 || len(v.Check.Missing) != 0 {
		t.Fatalf("--json: exit %d %v %q %q", code, err, o, e)
	}
}

// An undecryptable Bridge message makes migrate warn and exit 3, as export
// does; the rest arrives in Dovecot, and a re-run adds nothing.
func TestMigrateBridgeUndecryptable(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	d := testmail.StartDovecot(t)
	state := "XDG_STATE_HOME=" + t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=" + testmail.BridgePassword, "MAILMOVE_TO_PASSWORD=pw", state}
	args := []string{"migrate", "--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem"),
		"--to", "imaps://dst@" + d.TLSAddr, "--to-ca-file", filepath.Join(d.Dir, "cert.pem")}
	o, e, code := runCmdEnv(t, env, append(args, "--json")...)
	if code != 3 || !strings.Contains(e, "Proton Mail Bridge could not decrypt this message") {
		t.Fatalf("migrate: exit %d, want 3 and a warning: %q", code, e)
	}
	var v migrateJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil || v.Schema != 1 || v.Command != "migrate" || v.OK || len(v.Undecryptable) != 1 || v.Copied == 0 {
		t.Fatalf("--json: %v %q", err, o)
	}
	held := accountIDs(t, d.Config(t, "imaps", "dst"))
	n := 0
	for _, ids := range held {
		n += len(ids)
	}
	if n != v.Copied || n == 0 {
		t.Fatalf("%d messages in Dovecot, %d copied", n, v.Copied)
	}
	// a re-run: the message was copied as Bridge served it, nothing new,
	// exit 0
	o, e, code = runCmdEnv(t, env, append(args, "--json")...)
	v = migrateJSON{}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Copied != 0 {
		t.Fatalf("re-run --json: exit %d %v %q %q", code, err, o, e)
	}
}

// migrate killed with SIGKILL at random moments, then run to the end:
// every message is at the target exactly once, and the state folder holds
// the journal alone (no staging copy, no temporary files).
func TestMigrateKillAndResume(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, testmail.Gen(500, []string{"INBOX", "Sent", "Archive/2024"}, 8))
	state := t.TempDir()
	ca := filepath.Join(d.Dir, "cert.pem")
	env := []string{"MAILMOVE_FROM_PASSWORD=pw", "MAILMOVE_TO_PASSWORD=pw", "XDG_STATE_HOME=" + state}
	args := []string{"migrate", "--from", "imaps://src@" + d.TLSAddr, "--from-ca-file", ca,
		"--to", "imaps://dst@" + slowProxy(t, d.TLSAddr), "--to-ca-file", ca}
	if kills := killRuns(t, 10, 5, env, args...); kills == 0 {
		t.Fatal("no run was killed")
	}
	o, e, code := runCmdEnv(t, env, append(args, "--json")...)
	var v migrateJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || len(v.Check.Missing) != 0 {
		t.Fatalf("final migrate: exit %d %v %q %q", code, err, o, e)
	}
	exactlyOnce(t, accountIDs(t, src), accountIDs(t, d.Config(t, "imaps", "dst")))
	var files []string
	filepath.WalkDir(state, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 || !strings.HasSuffix(files[0], ".jsonl") {
		t.Fatalf("the state folder holds %v, want one journal", files)
	}
}

// Peak memory stays flat with big messages: three of 25 MiB go from one
// Dovecot user to another, byte for byte.
func TestMigrateMemoryFlat(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	var msgs []testmail.Msg
	for i := 0; i < 3; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "From: big@example.org\r\nSubject: big %d\r\nMessage-ID: <big%d@example.org>\r\n\r\n", i, i)
		line := fmt.Sprintf("%d%s\r\n", i, strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 2))
		for b.Len() < 25<<20 {
			b.WriteString(line)
		}
		msgs = append(msgs, testmail.Msg{Folder: "INBOX", Raw: []byte(b.String()), Date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)})
	}
	msgs = append(msgs, testmail.Gen(50, []string{"INBOX"}, 2)...)
	testmail.Put(t, src, msgs)
	ca := filepath.Join(d.Dir, "cert.pem")
	cmd := exec.Command(binary(t), "migrate", "--from", "imaps://src@"+d.TLSAddr, "--from-ca-file", ca, "--to", "imaps://dst@"+d.TLSAddr, "--to-ca-file", ca)
	cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=pw", "MAILMOVE_TO_PASSWORD=pw", "XDG_STATE_HOME="+t.TempDir(), "MAILMOVE_DEBUG_PEAK_RSS=1")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("migrate: %v: %s", err, res)
	}
	var maxRSS int64
	parts := strings.SplitN(string(res), "VmHWM:", 2)
	if _, err := fmt.Sscanf(strings.TrimSpace(parts[len(parts)-1]), "%d kB", &maxRSS); err != nil {
		t.Fatalf("no peak RSS in %q", res)
	}
	t.Logf("peak RSS %d MiB for three 25 MiB messages", maxRSS/1024)
	if maxRSS > 100<<10 {
		t.Errorf("peak RSS %d MiB, over 100 MiB", maxRSS/1024)
	}
	want := map[string]int{}
	for _, m := range msgs {
		want[fmt.Sprintf("%x", sha256.Sum256(m.Raw))]++
	}
	for _, m := range testmail.Held(t, d.Config(t, "imaps", "dst"))["INBOX"] {
		want[fmt.Sprintf("%x", sha256.Sum256(m.Raw))]--
	}
	for h, n := range want {
		if n != 0 {
			t.Errorf("message %s: %d copies missing (negative: extra)", h[:12], n)
		}
	}
}

// --keep-archive writes what migrate copies into an archive too, one that
// check finds whole; --labels takes only its three values.
func TestMigrateKeepArchive(t *testing.T) {
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(20, []string{"INBOX", "Sent"}, 6))
	dst := testmail.Mem(t)
	arch := filepath.Join(t.TempDir(), "arch")
	env := []string{"MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret", "XDG_STATE_HOME=" + t.TempDir()}
	args := []string{"migrate", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", "imap://alice@" + dst.Addr + "?tls=none"}
	if _, e, code := runCmdEnv(t, env, append(args, "--labels", "nope")...); code != exitUsage || !strings.Contains(e, "keywords, folders or skip") {
		t.Fatalf("--labels nope: exit %d %q", code, e)
	}
	if _, e, code := runCmdEnv(t, env, append(args, "--keep-archive", arch)...); code != 0 {
		t.Fatalf("migrate: %d %s", code, e)
	}
	o, e, code := runCmdEnv(t, env, "check", arch, "--json")
	var v struct {
		Messages int `json:"messages"`
	}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || v.Messages != 20 {
		t.Fatalf("check: exit %d %v %q %q", code, err, o, e)
	}
	if got := messageIDs(t, dst.Addr); len(got["INBOX"])+len(got["Sent"]) != 20 {
		t.Fatalf("target: %v", got)
	}
}

// migrate ends with verify's cheap check on the folders its run looked at:
// a copy lost at the target (the journal says it was copied, so the run
// does not copy it again) is named by folder and Message-ID, exit 3.
func TestMigrateClosingCheck(t *testing.T) {
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(10, []string{"INBOX", "Sent"}, 5))
	dst := testmail.Mem(t)
	state := "XDG_STATE_HOME=" + t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret", state}
	args := []string{"migrate", "--json", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", "imap://alice@" + dst.Addr + "?tls=none"}
	o, e, code := runCmdEnv(t, env, args...)
	var v struct {
		OK     bool `json:"ok"`
		Verify *struct {
			Messages int `json:"messages"`
			Matched  int `json:"matched"`
			Missing  int `json:"missing"`
		} `json:"verify"`
	}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Verify == nil || v.Verify.Matched != 10 || v.Verify.Missing != 0 {
		t.Fatalf("first run: exit %d, %v, %+v %s", code, err, v.Verify, e)
	}
	// lose one copy at the target
	c, err := testmail.MemConfig(t, dst.Addr).Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	// (EXPUNGE also took the copies flagged \Deleted)
	var lost []string
	have := map[string]bool{}
	for _, id := range messageIDs(t, dst.Addr)["Sent"] {
		have[id] = true
	}
	for _, id := range messageIDs(t, src.Addr)["Sent"] {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) == 0 {
		t.Fatal("nothing lost at the target")
	}
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(1, []string{"Sent"}, 77))
	o, e, code = runCmdEnv(t, env, args...)
	v.Verify = nil
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != exitPartial || v.OK || v.Verify == nil || v.Verify.Missing != len(lost) {
		t.Fatalf("second run: exit %d, %v, %+v %s", code, err, v.Verify, e)
	}
	for _, id := range lost {
		if !strings.Contains(e, "check: Sent: missing at the target (Sent): <"+id+">") {
			t.Fatalf("the lost copy %s is not named: %s", id, e)
		}
	}
}
