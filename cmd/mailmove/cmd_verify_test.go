package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/internal/testmail"
)

// verifyJSON is the part of verify --json the tests read.
type verifyJSON struct {
	Schema    int    `json:"schema"`
	Command   string `json:"command"`
	OK        bool   `json:"ok"`
	Messages  int    `json:"messages"`
	Matched   int    `json:"matched"`
	Missing   int    `json:"missing"`
	Extra     int    `json:"extra"`
	Different int    `json:"different"`
	Folders   []struct {
		Folder  string `json:"folder"`
		Missing []struct {
			MessageID string `json:"message_id"`
			Subject   string `json:"subject"`
		} `json:"missing"`
		Extra []struct {
			MessageID string `json:"message_id"`
		} `json:"extra"`
		Different []struct {
			What string `json:"what"`
			From struct {
				MessageID string `json:"message_id"`
			} `json:"from"`
		} `json:"different"`
	} `json:"folders"`
}

// changeOnServer finds the message with Message-ID id in folder and
// removes it, or, with alter, puts it back with one byte of its body
// changed (same size), or, with flag, adds that flag to it.
func changeOnServer(t *testing.T, cfg *account.Config, folder, id string, alter bool, flag imap.Flag) {
	t.Helper()
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var all imap.UIDSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		var raw []byte
		for _, bs := range m.BodySection {
			raw = bs.Bytes
		}
		if !bytes.Contains(raw, []byte("Message-ID: <"+id+">")) {
			continue
		}
		if flag != "" {
			if err := c.Store(imap.UIDSetNum(m.UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{flag}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := c.Store(imap.UIDSetNum(m.UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.UIDExpunge(imap.UIDSetNum(m.UID)).Close(); err != nil {
			t.Fatal(err)
		}
		if alter {
			i := bytes.Index(raw, []byte("From the start"))
			raw = bytes.Clone(raw)
			raw[i+5] = 'T'
			flags := slices.DeleteFunc(m.Flags, func(f imap.Flag) bool { return f == `\Recent` })
			testmail.Put(t, cfg, []testmail.Msg{{Folder: folder, Raw: raw, Flags: flags, Date: m.InternalDate}})
		}
		return
	}
	t.Fatalf("no %s in %s", id, folder)
}

// verify: Dovecot -> export (mbox and eml) verifies clean; Dovecot ->
// Dovecot by migrate verifies clean; then a deleted, an altered and an
// extra message on the target, and a changed flag, are each named, with
// exit code 4; --json.
func TestVerifyCommand(t *testing.T) {
	d := testmail.StartDovecot(t)
	ca := filepath.Join(d.Dir, "cert.pem")
	srcURL, dstURL := "imaps://src@"+d.TLSAddr, "imaps://dst@"+d.TLSAddr
	testmail.Put(t, d.Config(t, "imaps", "src"), testmail.Gen(60, []string{"INBOX", "Sent", "Archive/2024"}, 5))
	env := []string{"MAILMOVE_FROM_PASSWORD=pw", "MAILMOVE_TO_PASSWORD=pw"}
	for _, format := range []string{"mbox", "eml"} {
		out := filepath.Join(t.TempDir(), "archive")
		if _, e, code := runCmdEnv(t, env, "export", "--from", srcURL, "--from-ca-file", ca, "--to", format, "--out", out); code != 0 {
			t.Fatalf("export: %d %s", code, e)
		}
		o, e, code := runCmdEnv(t, env, "verify", "--from", srcURL, "--from-ca-file", ca, "--to", out)
		if code != 0 || !strings.Contains(o, "60 messages -> 60 compared") || !strings.Contains(o, "0 missing, 0 extra, 0 different") {
			t.Fatalf("verify %s: exit %d %q %q", format, code, o, e)
		}
		o, e, code = runCmdEnv(t, env, "verify", "--from", srcURL, "--from-ca-file", ca, "--to", out, "--deep", "--flags", "--json")
		var v verifyJSON
		if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || v.Schema != 1 || v.Command != "verify" || !v.OK || v.Messages != 60 || v.Matched != 60 {
			t.Fatalf("verify --json %s: exit %d %v %q %q", format, code, err, o, e)
		}
		if format != "eml" {
			continue
		}
		// a damaged archive message (one byte, same size): the cheap check
		// trusts the index; --deep cannot read it and says so, exit 3
		files, _ := filepath.Glob(filepath.Join(out, "Sent", "*.eml"))
		if len(files) == 0 {
			t.Fatal("no .eml in Sent")
		}
		b, _ := os.ReadFile(files[0])
		b[len(b)-3] ^= 1
		if err := os.WriteFile(files[0], b, 0o600); err != nil {
			t.Fatal(err)
		}
		if o, e, code := runCmdEnv(t, env, "verify", "--from", srcURL, "--from-ca-file", ca, "--to", out); code != 0 {
			t.Fatalf("cheap verify of a damaged archive: exit %d %q %q", code, o, e)
		}
		o, e, code = runCmdEnv(t, env, "verify", "--from", srcURL, "--from-ca-file", ca, "--to", out, "--deep")
		if code != exitPartial || !strings.Contains(e, filepath.Base(files[0])) || !strings.Contains(e, "SHA-256") || !strings.Contains(o, "1 not readable") {
			t.Fatalf("verify --deep of a damaged archive: exit %d, want %d naming the file: %q %q", code, exitPartial, o, e)
		}
	}
	if _, e, code := runCmdEnv(t, env, "migrate", "--from", srcURL, "--from-ca-file", ca, "--to", dstURL, "--to-ca-file", ca, "--staging", filepath.Join(t.TempDir(), "staging")); code != 0 {
		t.Fatalf("migrate: %d %s", code, e)
	}
	args := []string{"verify", "--from", srcURL, "--from-ca-file", ca, "--to", dstURL, "--to-ca-file", ca}
	if o, e, code := runCmdEnv(t, env, append(args, "--deep", "--flags")...); code != 0 {
		t.Fatalf("verify after migrate: exit %d %q %q", code, o, e)
	}
	// Gen puts messages 1, 4, 7, 10 into Sent
	dst := d.Config(t, "imaps", "dst")
	gone, altered, extra, flagged := "m5.1@example.org", "m5.4@example.org", "extra@example.org", "m5.10@example.org"
	changeOnServer(t, dst, "Sent", gone, false, "")
	changeOnServer(t, dst, "Sent", altered, true, "")
	testmail.Put(t, d.Config(t, "imaps", "dst"), []testmail.Msg{{Folder: "Sent", Raw: []byte("From: x@example.org\r\nSubject: not from the source\r\nMessage-ID: <" + extra + ">\r\nDate: Mon, 06 Jan 2025 09:15:00 +0100\r\n\r\nextra\r\n")}})
	changeOnServer(t, dst, "Sent", flagged, false, imap.FlagFlagged)

	o, e, code := runCmdEnv(t, env, args...)
	if code != exitDiffers || !strings.Contains(o, "missing: <"+gone+">") || !strings.Contains(o, "extra: <"+extra+">") || !strings.Contains(o, `"message 1"`) ||
		strings.Contains(o, altered) || strings.Contains(o, flagged) || !strings.Contains(o, "1 missing, 1 extra, 0 different") {
		t.Fatalf("verify: exit %d, want %d naming the deleted and the extra message:\n%s%s", code, exitDiffers, o, e)
	}
	o, e, code = runCmdEnv(t, env, append(args, "--deep")...)
	if code != exitDiffers || !strings.Contains(o, "different content: <"+altered+">") || !strings.Contains(o, "1 missing, 1 extra, 1 different") {
		t.Fatalf("verify --deep: exit %d:\n%s%s", code, o, e)
	}
	o, e, code = runCmdEnv(t, env, append(args, "--deep", "--flags", "--json")...)
	var v verifyJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != exitDiffers || v.OK || v.Missing != 1 || v.Extra != 1 || v.Different != 2 {
		t.Fatalf("verify --deep --flags --json: exit %d %v %s %s", code, err, o, e)
	}
	var what []string
	for _, f := range v.Folders {
		for _, x := range f.Different {
			what = append(what, x.What+" "+x.From.MessageID)
		}
		for _, x := range f.Missing {
			if f.Folder != "Sent" || x.MessageID != gone || x.Subject != "message 1" {
				t.Errorf("missing: %s %+v", f.Folder, x)
			}
		}
	}
	slices.Sort(what)
	if want := []string{"content " + altered, "flags " + flagged}; !slices.Equal(what, want) {
		t.Errorf("different: %v, want %v", what, want)
	}
	// --allow-extra does not forgive a missing message
	if _, _, code := runCmdEnv(t, env, append(args, "--allow-extra")...); code != exitDiffers {
		t.Errorf("--allow-extra: exit %d", code)
	}
}

// verify's usage errors: a side missing, a path that is not there.
func TestVerifyUsage(t *testing.T) {
	if _, e, code := runCmd(t, "verify", "--from", t.TempDir()); code != exitUsage || !strings.Contains(e, "--to is required") {
		t.Errorf("no --to: exit %d %q", code, e)
	}
	if _, e, code := runCmd(t, "verify", "--from", t.TempDir(), "--to", filepath.Join(t.TempDir(), "nothing")); code != exitUsage || !strings.Contains(e, "not an account URL") {
		t.Errorf("no such path: exit %d %q", code, e)
	}
	if o, _, code := runCmd(t, "help", "verify"); code != 0 || !strings.Contains(o, "--deep") {
		t.Errorf("help verify: %d %q", code, o)
	}
	// a server that is not there: exit 1, and --json says so
	o, e, code := runCmd(t, "verify", "--from", "imap://alice@127.0.0.1:1?tls=none", "--to", t.TempDir(), "--json")
	var v struct {
		Schema  int    `json:"schema"`
		Command string `json:"command"`
		OK      *bool  `json:"ok"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != exitFailed || v.Schema != 1 || v.Command != "verify" || v.OK == nil || *v.OK || v.Error == "" {
		t.Errorf("verify --json, no server: exit %d, stdout %q, stderr %q", code, o, e)
	}
	if _, e, code := runCmd(t, "verfiy"); code != exitUsage || !strings.Contains(e, "did you mean verify?") {
		t.Errorf("verfiy: %d %q", code, e)
	}
}

// The Proton Mail Bridge stand-in verifies clean against its export.
func TestVerifyBridge(t *testing.T) {
	br, _, env := startBridge(t)
	out := filepath.Join(t.TempDir(), "proton")
	from := []string{"--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem")}
	if _, e, code := runCmdEnv(t, env, append([]string{"export", "--to", "mbox", "--out", out}, from...)...); code != 0 && code != exitPartial {
		t.Fatalf("export: %d %s", code, e)
	}
	o, e, code := runCmdEnv(t, env, append([]string{"verify", "--to", out, "--deep", "--flags"}, from...)...)
	if code != 0 || !strings.Contains(o, "0 missing, 0 extra, 0 different") {
		t.Fatalf("verify: exit %d %q %q", code, o, e)
	}
}

// verify --deep hashes a 60 MiB message with flat memory.
func TestVerifyMemoryFlat(t *testing.T) {
	srv := testmail.Mem(t)
	var b bytes.Buffer
	b.WriteString("From: big@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 2) + "\r\n"
	for b.Len() < 60<<20 {
		b.WriteString(line)
	}
	testmail.Put(t, testmail.MemConfig(t, srv.Addr), []testmail.Msg{{Folder: "INBOX", Raw: b.Bytes()}})
	b = bytes.Buffer{}
	url := "imap://alice@" + srv.Addr + "?tls=none"
	out := filepath.Join(t.TempDir(), "a")
	if _, e, code := runCmd(t, "export", "--from", url, "--to", "mbox", "--out", out); code != 0 {
		t.Fatal(e)
	}
	cmd := exec.Command(binary(t), "verify", "--from", url, "--to", out, "--deep")
	cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_DEBUG_PEAK_RSS=1")
	res, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(res), "1 matched") {
		t.Fatalf("%v: %s", err, res)
	}
	var maxRSS int64
	parts := strings.SplitN(string(res), "VmHWM:", 2)
	if _, err := fmt.Sscanf(strings.TrimSpace(parts[len(parts)-1]), "%d kB", &maxRSS); err != nil {
		t.Fatalf("no peak RSS in %q", res)
	}
	t.Logf("peak RSS %d MiB for a 60 MiB message", maxRSS/1024)
	if maxRSS > 50<<10 {
		t.Errorf("peak RSS %d MiB: the message was held in memory", maxRSS/1024)
	}
}
