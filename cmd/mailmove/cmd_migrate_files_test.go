package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/mbox"
	"github.com/mailmove/mailmove/internal/testmail"
)

// writeMbox appends msgs to an mbox file (LF line endings, mboxrd quoting,
// as mail programs write it).
func writeMbox(t *testing.T, path string, msgs []testmail.Msg) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := mbox.NewWriter(f, true)
	for _, m := range msgs {
		if _, err := w.WriteMessage("someone@example.org", m.Date, bytes.NewReader(m.Raw)); err != nil {
			t.Fatal(err)
		}
	}
}

// migrateRun runs migrate --json and decodes its summary.
func migrateRun(t *testing.T, env []string, args ...string) (migrateJSON, string, int) {
	t.Helper()
	o, e, code := runCmdEnv(t, env, append([]string{"migrate", "--json"}, args...)...)
	var v migrateJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil {
		t.Fatalf("migrate --json: %v: %q %s", err, o, e)
	}
	return v, e, code
}

// migrate --from an mbox file: every message once into INBOX; a re-run
// copies nothing; messages added to the file are copied, and only they.
func TestMigrateFromMbox(t *testing.T) {
	dst := testmail.Mem(t)
	file := filepath.Join(t.TempDir(), "saved.mbox")
	msgs := testmail.Gen(30, []string{"INBOX"}, 21)
	writeMbox(t, file, msgs[:25])
	env := []string{"MAILMOVE_TO_PASSWORD=secret"}
	jdir := t.TempDir()
	args := []string{"--from", file, "--to", "imap://alice@" + dst.Addr + "?tls=none", "--journal-dir", jdir}
	v, e, code := migrateRun(t, env, args...)
	if code != 0 || !v.OK || v.Copied != 25 || v.Check.Messages != 25 || len(v.Check.Missing) != 0 {
		t.Fatalf("first run: %d %+v %s", code, v, e)
	}
	want := map[string][]string{}
	for _, m := range msgs {
		want["INBOX"] = append(want["INBOX"], messageID(m.Raw))
	}
	first := map[string][]string{"INBOX": want["INBOX"][:25]}
	exactlyOnce(t, first, messageIDs(t, dst.Addr))
	// the journal knows every message: nothing copied, nothing there twice
	if v, e, code = migrateRun(t, env, args...); code != 0 || !v.OK || v.Copied != 0 || v.Check.Messages != 25 || len(v.Check.Missing) != 0 {
		t.Fatalf("re-run: %d %+v %s", code, v, e)
	}
	// the mail program appended to the file
	writeMbox(t, file, msgs[25:])
	if v, e, code = migrateRun(t, env, args...); code != 0 || !v.OK || v.Copied != 5 || v.Check.Messages != 30 {
		t.Fatalf("after 5 new messages: %d %+v %s", code, v, e)
	}
	exactlyOnce(t, want, messageIDs(t, dst.Addr))
	// without the journal: what is at the target is recognised there
	if v, e, code = migrateRun(t, env, append(args[:4], "--journal-dir", t.TempDir())...); code != 0 || v.Copied != 0 || v.AlreadyThere != 30 {
		t.Fatalf("run with a new journal: %d %+v %s", code, v, e)
	}
	exactlyOnce(t, want, messageIDs(t, dst.Addr))
}

func messageID(raw []byte) string {
	for _, l := range strings.Split(string(raw), "\r\n") {
		if v, ok := strings.CutPrefix(l, "Message-ID: <"); ok {
			return strings.TrimSuffix(v, ">")
		}
	}
	return ""
}

// migrate --from - reads an mbox on standard input, as import does.
func TestMigrateFromStdin(t *testing.T) {
	dst := testmail.Mem(t)
	for run := 0; run < 2; run++ {
		f, err := os.Open(filepath.Join(testmail.Root(), "testdata", "import", "mboxrd-crlf.mbox"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(binary(t), "migrate", "--json", "--from", "-", "--to", "imap://alice@"+dst.Addr+"?tls=none", "--journal-dir", t.TempDir(), "--prefix", "FromStdin")
		cmd.Env = append(os.Environ(), "MAILMOVE_TO_PASSWORD=secret")
		cmd.Stdin = f
		out, err := cmd.Output()
		f.Close()
		var v migrateJSON
		if err != nil || json.Unmarshal(out, &v) != nil || !v.OK || v.Copied+v.AlreadyThere != 2 || (run == 0) != (v.Copied == 2) {
			t.Fatalf("run %d: %v: %s", run, err, out)
		}
	}
	if got := messageIDs(t, dst.Addr); len(got["FromStdin/INBOX"]) != 2 {
		t.Fatalf("FromStdin/INBOX holds %v", got)
	}
}

// migrate --from an encrypted archive needs --identity, and then copies
// every message once, with flags and arrival dates.
func TestMigrateFromEncryptedArchive(t *testing.T) {
	src := seedServer(t, 60)
	idFile, rcpt := newIdentity(t)
	arch := filepath.Join(t.TempDir(), "enc")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", "mbox", "--out", arch, "--encrypt-to", rcpt); code != 0 {
		t.Fatalf("export: %d %s", code, e)
	}
	dst := testmail.Mem(t)
	env := []string{"MAILMOVE_TO_PASSWORD=secret"}
	to := "imap://alice@" + dst.Addr + "?tls=none"
	jdir := t.TempDir()
	if _, e, code := runCmdEnv(t, env, "migrate", "--from", arch, "--to", to, "--journal-dir", jdir); code == 0 || !strings.Contains(e, "--identity") {
		t.Fatalf("without --identity: %d %s", code, e)
	}
	v, e, code := migrateRun(t, env, "--from", arch, "--identity", idFile, "--to", to, "--journal-dir", jdir)
	if code != 0 || !v.OK || v.Copied != 60 {
		t.Fatalf("migrate: %d %+v %s", code, v, e)
	}
	exactlyOnce(t, messageIDs(t, src.Addr), messageIDs(t, dst.Addr))
	sameFlagsAndDates(t, testmail.MemConfig(t, src.Addr), testmail.MemConfig(t, dst.Addr))
	if v, e, code = migrateRun(t, env, "--from", arch, "--identity", idFile, "--to", to, "--journal-dir", jdir); code != 0 || v.Copied != 0 || v.Check.Messages != 60 || len(v.Check.Missing) != 0 {
		t.Fatalf("re-run: %d %+v %s", code, v, e)
	}
}

// sameFlagsAndDates checks that b holds a's messages with the same flags
// and INTERNALDATE (by Message-ID and folder).
func sameFlagsAndDates(t *testing.T, a, b *account.Config) {
	t.Helper()
	desc := func(cfg *account.Config) map[string]string {
		out := map[string]string{}
		for f, msgs := range testmail.Held(t, cfg) {
			for _, m := range msgs {
				var fl []string
				for _, x := range m.Flags {
					if !strings.EqualFold(string(x), `\Recent`) {
						fl = append(fl, strings.ToLower(string(x)))
					}
				}
				out[f+" "+messageID(m.Raw)] = fmt.Sprint(sortedStrings(fl), " ", m.Date.UTC().Format(time.RFC3339))
			}
		}
		return out
	}
	wa, wb := desc(a), desc(b)
	for k, v := range wa {
		if wb[k] != v {
			t.Fatalf("%s: target has %q, source %q", k, wb[k], v)
		}
	}
}

func sortedStrings(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// migrate --from an mbox archive, killed at random points and cut by a
// slow proxy: the last run leaves every message once at the target.
func TestMigrateFromFilesKillAndResume(t *testing.T) {
	src := seedServer(t, 600)
	arch := filepath.Join(t.TempDir(), "archive")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", "mbox", "--out", arch); code != 0 {
		t.Fatalf("export: %d %s", code, e)
	}
	want := messageIDs(t, src.Addr)
	dst := testmail.MemStrict(t)
	to := "imap://alice@" + slowProxy(t, dst.Addr) + "?tls=none"
	jdir := t.TempDir()
	env := []string{"MAILMOVE_TO_PASSWORD=secret"}
	killRuns(t, 10, 5, env, "migrate", "--from", arch, "--to", to, "--journal-dir", jdir)
	v, e, code := migrateRun(t, env, "--from", arch, "--to", to, "--journal-dir", jdir)
	if code != 0 || !v.OK {
		t.Fatalf("final run: %d %+v %s", code, v, e)
	}
	exactlyOnce(t, want, messageIDs(t, dst.Addr))
	if v, e, code = migrateRun(t, env, "--from", arch, "--to", to, "--journal-dir", jdir); code != 0 || v.Copied != 0 || v.Check.Messages != 600 || len(v.Check.Missing) != 0 {
		t.Fatalf("re-run: %d %+v %s", code, v, e)
	}
}

// migrate --from a Maildir tree that mbsync wrote from a real Dovecot,
// into another Dovecot user: every message once, with its flags. Then
// the account gains a message and a flag changes, mbsync syncs again (new
// files, a file renamed): the next migrate copies the new message alone
// and brings the flag over.
func TestMigrateFromMbsyncMaildir(t *testing.T) {
	mbsync := testmail.NeedTool(t, "mbsync", "isync")
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, testmail.Gen(40, []string{"INBOX", "Sent", "Archive/2024"}, 31))
	dir := t.TempDir()
	tree := filepath.Join(dir, "mail")
	_, p, _ := net.SplitHostPort(d.TLSAddr)
	rc := fmt.Sprintf("IMAPAccount src\nHost 127.0.0.1\nPort %s\nUser src\nPass pw\nSSLType IMAPS\nCertificateFile %s\n\nIMAPStore remote\nAccount src\n\nMaildirStore local\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\nChannel ch\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\n",
		p, filepath.Join(d.Dir, "cert.pem"), tree, tree)
	cfg := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfg, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(tree, 0o700)
	sync := func() {
		cmd := exec.Command(mbsync, "-q", "-c", cfg, "-a")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	sync()
	env := []string{"MAILMOVE_TO_PASSWORD=pw"}
	args := []string{"--from", tree, "--to", "imaps://dst@" + d.TLSAddr, "--to-ca-file", filepath.Join(d.Dir, "cert.pem"), "--journal-dir", t.TempDir()}
	v, e, code := migrateRun(t, env, args...)
	if code != 0 || !v.OK || v.Copied != 40 {
		t.Fatalf("migrate: %d %+v %s", code, v, e)
	}
	dstCfg := d.Config(t, "imaps", "dst")
	exactlyOnce(t, accountIDs(t, src), accountIDs(t, dstCfg))
	sameFlags(t, src, dstCfg)

	// a new message and a changed flag at the source, synced by mbsync
	testmail.Put(t, src, testmail.Gen(1, []string{"INBOX"}, 32))
	c, err := src.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var one imap.UIDSet
	one.AddNum(2)
	if err := c.Store(one, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	sync()
	if v, e, code = migrateRun(t, env, args...); code != 0 || !v.OK || v.Copied != 1 || v.FlagsUpdated != 1 {
		t.Fatalf("second migrate: %d %+v %s", code, v, e)
	}
	exactlyOnce(t, accountIDs(t, src), accountIDs(t, dstCfg))
	sameFlags(t, src, dstCfg)
	if v, e, code = migrateRun(t, env, args...); code != 0 || v.Copied != 0 || v.FlagsUpdated != 0 || v.Check.Messages != 41 || len(v.Check.Missing) != 0 {
		t.Fatalf("third migrate: %d %+v %s", code, v, e)
	}
}

// sameFlags checks that b holds a's messages with the same system flags
// (mbsync keeps those alone), by folder and Message-ID.
func sameFlags(t *testing.T, a, b *account.Config) {
	t.Helper()
	desc := func(cfg *account.Config) map[string]string {
		out := map[string]string{}
		for f, msgs := range testmail.Held(t, cfg) {
			for _, m := range msgs {
				var fl []string
				for _, x := range m.Flags {
					if strings.HasPrefix(string(x), `\`) && !strings.EqualFold(string(x), `\Recent`) {
						fl = append(fl, strings.ToLower(string(x)))
					}
				}
				out[f+" "+messageID(m.Raw)] = fmt.Sprint(sortedStrings(fl))
			}
		}
		return out
	}
	wa, wb := desc(a), desc(b)
	if len(wa) != len(wb) {
		t.Fatalf("%d messages at the target, %d at the source", len(wb), len(wa))
	}
	for k, v := range wa {
		if wb[k] != v {
			t.Fatalf("%s: target has flags %q, source %q", k, wb[k], v)
		}
	}
}

// Local input mailmove cannot send (NUL bytes) or that is not mail is
// listed, with exit 3; the rest is copied.
func TestMigrateFromFilesBadInput(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.eml"), []byte("From: a@example.org\r\nSubject: good\r\nMessage-ID: <good@example.org>\r\n\r\nfine\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "nul.eml"), []byte("From: a@example.org\r\nSubject: nul\r\n\r\na\x00b\r\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "zip.eml"), []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip"), 0o600)
	dst := testmail.Mem(t)
	v, e, code := migrateRun(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "--from", dir, "--to", "imap://alice@"+dst.Addr+"?tls=none", "--journal-dir", t.TempDir())
	if code != exitPartial || v.OK || v.Copied != 1 || len(v.Failed) != 2 || !strings.Contains(e, "NUL") || !strings.Contains(e, "zip") {
		t.Fatalf("%d %+v %s", code, v, e)
	}
	if got := messageIDs(t, dst.Addr); len(got["INBOX"]) != 1 || got["INBOX"][0] != "good@example.org" {
		t.Fatalf("INBOX holds %v", got)
	}
}

// --delete with local input: a message gone from the file is deleted at
// the target; messages that only moved within the file (an mbox rewritten
// in place by its mail program: other offsets) keep their one copy.
func TestMigrateFromMboxDelete(t *testing.T) {
	dst := testmail.Mem(t)
	file := filepath.Join(t.TempDir(), "box.mbox")
	msgs := testmail.Gen(6, []string{"INBOX"}, 41)
	writeMbox(t, file, msgs)
	env := []string{"MAILMOVE_TO_PASSWORD=secret"}
	args := []string{"--from", file, "--to", "imap://alice@" + dst.Addr + "?tls=none", "--journal-dir", t.TempDir(), "--delete"}
	if v, e, code := migrateRun(t, env, args...); code != 0 || v.Copied != 6 {
		t.Fatalf("first run: %d %+v %s", code, v, e)
	}
	// the first two deleted by the mail program, which rewrote the file in
	// place (the same file: a file renamed over it is another source)
	if err := os.Truncate(file, 0); err != nil {
		t.Fatal(err)
	}
	writeMbox(t, file, msgs[2:])
	v, e, code := migrateRun(t, env, args...)
	if code != 0 || !v.OK || v.Copied != 0 || v.Deleted != 2 {
		t.Fatalf("after the rewrite: %d %+v %s", code, v, e)
	}
	want := map[string][]string{}
	for _, m := range msgs[2:] {
		want["INBOX"] = append(want["INBOX"], messageID(m.Raw))
	}
	exactlyOnce(t, want, messageIDs(t, dst.Addr))
}

// --folder and --exclude select the folders of local input as they
// select an account's.
func TestMigrateFromFilesFolderGlobs(t *testing.T) {
	src := seedServer(t, 40)
	arch := filepath.Join(t.TempDir(), "arch")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", "eml", "--out", arch); code != 0 {
		t.Fatalf("export: %d %s", code, e)
	}
	all := messageIDs(t, src.Addr)
	dst := testmail.Mem(t)
	env := []string{"MAILMOVE_TO_PASSWORD=secret"}
	base := []string{"--from", arch, "--to", "imap://alice@" + dst.Addr + "?tls=none", "--journal-dir", t.TempDir()}
	v, e, code := migrateRun(t, env, append(base, "--exclude", "Archive", "--exclude", "Sent")...)
	if code != 0 || !v.OK {
		t.Fatalf("--exclude: %d %+v %s", code, v, e)
	}
	got := messageIDs(t, dst.Addr)
	if len(got["Sent"]) != 0 || len(got["Archive/2024"]) != 0 || len(got["INBOX"]) != len(all["INBOX"]) || len(all["Sent"]) == 0 || len(all["Archive/2024"]) == 0 {
		t.Fatalf("after --exclude Archive --exclude Sent the target holds %v (source %v)", got, all)
	}
	if v, e, code = migrateRun(t, env, append(base, "--folder", "Archive")...); code != 0 || v.Copied != len(all["Archive/2024"]) {
		t.Fatalf("--folder Archive: %d %+v %s", code, v, e)
	}
	got = messageIDs(t, dst.Addr)
	if len(got["Archive/2024"]) != len(all["Archive/2024"]) || len(got["Sent"]) != 0 {
		t.Fatalf("after --folder Archive the target holds %v", got)
	}
}

// Takeout's labels follow --labels: keywords on the one copy (Starred is
// \Flagged, Important $Important), one copy per label folder, or left
// behind (Starred still \Flagged).
func TestMigrateFromTakeoutLabels(t *testing.T) {
	takeout := filepath.Join(testmail.Root(), "testdata", "import", "takeout.mbox")
	for _, mode := range []string{"keywords", "folders", "skip"} {
		t.Run(mode, func(t *testing.T) {
			dst := testmail.Mem(t)
			v, e, code := migrateRun(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "--from", takeout, "--to", "imap://alice@"+dst.Addr+"?tls=none", "--journal-dir", t.TempDir(), "--labels", mode)
			if code != 0 || !v.OK {
				t.Fatalf("%d %+v %s", code, v, e)
			}
			where := map[string][]string{} // Message-ID -> "folder: flags"
			for f, msgs := range testmail.Held(t, testmail.MemConfig(t, dst.Addr)) {
				for _, m := range msgs {
					var fl []string
					for _, x := range m.Flags {
						fl = append(fl, string(x))
					}
					where[messageID(m.Raw)] = append(where[messageID(m.Raw)], f+": "+strings.Join(sortedStrings(fl), " "))
				}
			}
			has := func(id, want string) bool { // keywords: the server may change their case
				for _, w := range where[id] {
					if strings.Contains(strings.ToLower(w), strings.ToLower(want)) {
						return true
					}
				}
				return false
			}
			if _, chat := where["g4@example.org"]; chat || len(where) != 4 {
				t.Fatalf("messages at the target: %v", where)
			}
			if !has("g5@example.org", `\Flagged`) || !has("g1@example.org", "INBOX") {
				t.Errorf("starred or inbox lost: %v", where)
			}
			copies := len(where["g3@example.org"])
			switch mode {
			case "keywords":
				if !has("g3@example.org", "Travel") || !has("g1@example.org", "$Important") || copies != 1 {
					t.Errorf("keywords: %v", where)
				}
			case "folders":
				if !has("g3@example.org", "Travel:") || !has("g3@example.org", "Projects, 2024:") || copies != 2 || has("g3@example.org", " Travel") {
					t.Errorf("folders: %v", where)
				}
			case "skip":
				if has("g3@example.org", "Travel") || has("g1@example.org", "$Important") || copies != 1 {
					t.Errorf("skip: %v", where)
				}
			}
		})
	}
}
