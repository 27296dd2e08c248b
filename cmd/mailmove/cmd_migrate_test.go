package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

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
