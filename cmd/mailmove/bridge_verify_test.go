package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/testmail"
)

// TestBridgeMigrateVerify: the Bridge stand-in migrated into Dovecot
// verifies clean with --deep (and with --flags: Proton labels are the
// target's keywords, starred its \Flagged); then on Bridge a new message,
// a flag changed and a label added; the re-run copies the one and brings
// the others over, and verify is clean again.
func TestBridgeMigrateVerify(t *testing.T) {
	br, _, _ := startBridge(t)
	d := testmail.StartDovecot(t)
	src := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + testmail.BridgePassword, "MAILMOVE_TO_PASSWORD=pw", "XDG_STATE_HOME=" + t.TempDir()}
	from := []string{"--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem")}
	to := []string{"--to", "imaps://dst@" + d.TLSAddr, "--to-ca-file", filepath.Join(d.Dir, "cert.pem")}
	migrate := func(what string, wantCode int) migrateJSON {
		t.Helper()
		o, e, code := runCmdEnv(t, env, append(append([]string{"migrate", "--json"}, from...), to...)...)
		var v migrateJSON
		if err := json.Unmarshal([]byte(o), &v); err != nil || code != wantCode || len(v.Failed) != 0 {
			t.Fatalf("%s: exit %d, %v: %s %s", what, code, err, o, e)
		}
		return v
	}
	verifyClean := func(what string, extra ...string) {
		t.Helper()
		args := append(append(append([]string{"verify"}, from...), to...), extra...)
		if o, e, code := runCmdEnv(t, env, args...); code != 0 || !strings.Contains(o, "0 missing, 0 extra, 0 different") {
			t.Fatalf("%s: verify %v: exit %d: %s %s", what, extra, code, o, e)
		}
	}
	// (exit 3: the stand-in serves one message Bridge could not decrypt;
	// a re-run finds its folder unchanged)
	migrate("migrate", exitPartial)
	verifyClean("after the migrate", "--deep")
	verifyClean("after the migrate", "--flags")

	// on Bridge: a new message, a label added to a message, a flag taken off
	testmail.Put(t, src, []testmail.Msg{{Folder: "INBOX", Raw: []byte("From: new@example.org\r\nTo: me@proton.test\r\nSubject: new on Bridge\r\nMessage-ID: <new-on-bridge@example.org>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nnew\r\n"), Date: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}})
	c, err := src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	pmids, err := c.FetchHeaderField("X-Pm-Internal-Id")
	if err != nil {
		t.Fatal(err)
	}
	var uids []uint32
	for u := range pmids {
		uids = append(uids, u)
	}
	meta, err := c.FetchMeta(uids)
	if err != nil {
		t.Fatal(err)
	}
	// the messages labelled Travel already
	travel := map[string]bool{}
	{
		lc, err := src.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lc.Examine("Labels/Travel"); err != nil {
			t.Fatal(err)
		}
		ids, err := lc.FetchHeaderField("X-Pm-Internal-Id")
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			travel[id] = true
		}
		lc.Logout().Wait()
	}
	var seen, label uint32
	for _, u := range uids {
		m := meta[u]
		isSeen := m != nil && slices.Contains(m.Flags, `\Seen`)
		switch {
		case seen == 0 && isSeen:
			seen = u
		case label == 0 && u != seen && pmids[u] != "" && !travel[pmids[u]]:
			label = u
		}
	}
	if seen == 0 || label == 0 {
		t.Fatalf("no seen message or none without the label Travel in INBOX: %v %v", meta, travel)
	}
	if _, err := c.Copy(imap.UIDSetNum(imap.UID(label)), "Labels/Travel").Wait(); err != nil {
		t.Fatalf("labelling on Bridge: %v", err)
	}
	if err := c.Store(imap.UIDSetNum(imap.UID(seen)), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	time.Sleep(time.Second) // the stand-in applies labels asynchronously, as Bridge does

	v := migrate("re-run", exitOK)
	if v.Copied != 1 || v.FlagsUpdated < 2 { // (a message in two folders has two copies)
		t.Fatalf("re-run: copied %d, flags updated %d, want the new message and the two changed", v.Copied, v.FlagsUpdated)
	}
	got := accountIDs(t, d.Config(t, "imaps", "dst"))
	n := 0
	for _, id := range got["INBOX"] {
		if id == "new-on-bridge@example.org" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("the new message is %d times in INBOX at the target", n)
	}
	verifyClean("after the re-run", "--deep")
	verifyClean("after the re-run", "--flags")
	// told that the copy left labels behind, verify finds the keywords
	// extra on the copies
	args := append(append(append([]string{"verify"}, from...), to...), "--flags", "--labels", "skip")
	if o, e, code := runCmdEnv(t, env, args...); code != exitDiffers || !strings.Contains(o, "different flags") {
		t.Fatalf("verify --flags --labels skip: exit %d: %s %s", code, o, e)
	}
	if _, e, code := runCmdEnv(t, env, append(args[:len(args)-1], "tags")...); code != exitUsage || !strings.Contains(e, "--labels") {
		t.Fatalf("verify --labels tags: exit %d: %s", code, e)
	}
}

// TestBridgeMigrateLabelsFolders: with --labels folders, Bridge's
// Labels/... are folders of the copy, and migrate's closing check (verify,
// told the label mode) compares them too; verify --labels folders --deep
// agrees.
func TestBridgeMigrateLabelsFolders(t *testing.T) {
	br, _, _ := startBridge(t)
	d := testmail.StartDovecot(t)
	env := []string{"MAILMOVE_FROM_PASSWORD=" + testmail.BridgePassword, "MAILMOVE_TO_PASSWORD=pw", "XDG_STATE_HOME=" + t.TempDir()}
	from := []string{"--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem")}
	to := []string{"--to", "imaps://dst@" + d.TLSAddr, "--to-ca-file", filepath.Join(d.Dir, "cert.pem")}
	o, e, code := runCmdEnv(t, env, append(append([]string{"migrate", "--json", "--labels", "folders"}, from...), to...)...)
	var v struct {
		Verify *struct {
			Messages int `json:"messages"`
			Missing  int `json:"missing"`
			Folders  []struct {
				Folder string `json:"folder"`
			} `json:"folders"`
		} `json:"verify"`
	}
	// (exit 3: the stand-in serves one message Bridge could not decrypt)
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != exitPartial || v.Verify == nil || v.Verify.Missing != 0 {
		t.Fatalf("migrate: exit %d, %v, %s %s", code, err, o, e)
	}
	checked := map[string]bool{}
	for _, f := range v.Verify.Folders {
		checked[f.Folder] = true
	}
	if !checked["Labels/Important"] || !checked["Labels/Travel"] || !checked["INBOX"] {
		t.Fatalf("the closing check compared %v, want the label folders too", checked)
	}
	args := append(append(append([]string{"verify"}, from...), to...), "--labels", "folders", "--deep")
	if o, e, code := runCmdEnv(t, env, args...); code != 0 || !strings.Contains(o, "0 missing, 0 extra, 0 different") {
		t.Fatalf("verify: exit %d: %s %s", code, o, e)
	}
}
