package main

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// oddMessages are real but unusual messages: a "From " first line, no
// header at all, no final newline, 8-bit bytes, a bare LF.
func oddMessages() []testmail.Msg {
	d := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	return []testmail.Msg{
		{Folder: "INBOX", Raw: []byte("From someone@example.org Sat May  6 07:08:09 2023\r\nFrom: a@example.org\r\nMessage-ID: <odd1@example.org>\r\n\r\nFrom the start\r\n>From quoted\r\n"), Date: d},
		{Folder: "INBOX", Raw: []byte("\r\nno header at all\r\nFrom here\r\n"), Date: d},
		{Folder: "Odd", Raw: []byte("From: b@example.org\r\nMessage-ID: <odd3@example.org>\r\n\r\nno final newline"), Date: d},
		{Folder: "Odd", Raw: []byte("From: c@example.org\r\nSubject: Gr\xfc\xdfe\r\nMessage-ID: <odd4@example.org>\r\n\r\n8-bit: \xe4\xf6\xfc\r\nbare\nLF\r\n"), Date: d},
	}
}

// noStateFiles fails when the state folder holds any file: a migrate into
// an archive keeps no journal (the index is the record).
func noStateFiles(t *testing.T, state string) {
	t.Helper()
	filepath.WalkDir(state, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			t.Errorf("the state folder holds %s: want nothing (the archive's index is the record)", p)
		}
		return nil
	})
}

// migrate --to DIR: a Dovecot account into an archive, both layouts, holds
// what export writes of the same account (the same UIDs and SHA-256 in
// each folder); check passes; a re-run copies nothing and changes no
// index byte; no journal is written.
func TestMigrateToArchive(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, append(testmail.Gen(60, []string{"INBOX", "Sent", "Archive/2024", "Entwürfe"}, 21), oddMessages()...))
	ca := filepath.Join(d.Dir, "cert.pem")
	from := []string{"--from", "imaps://src@" + d.TLSAddr, "--from-ca-file", ca}
	for _, format := range []string{"mbox", "eml"} {
		t.Run(format, func(t *testing.T) {
			state := t.TempDir()
			env := []string{"MAILMOVE_FROM_PASSWORD=pw", "XDG_STATE_HOME=" + state}
			ref := filepath.Join(t.TempDir(), "export")
			if _, e, code := runCmdEnv(t, env, append([]string{"export", "--to", format, "--out", ref}, from...)...); code != 0 {
				t.Fatalf("export: %d %s", code, e)
			}
			out := filepath.Join(t.TempDir(), "migrated")
			args := append([]string{"migrate", "--to", out, "--archive-format", format}, from...)
			o, e, code := runCmdEnv(t, env, append(args, "--json")...)
			var v migrateJSON
			if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Copied != 64 {
				t.Fatalf("migrate --to DIR: exit %d %v %q %q", code, err, o, e)
			}
			want, got := contents(t, ref), contents(t, out)
			if len(got) != len(want) {
				t.Fatalf("folders: %d, export has %d", len(got), len(want))
			}
			for f, w := range want {
				if strings.Join(got[f], ",") != strings.Join(w, ",") {
					t.Fatalf("folder %s: %v, export holds %v", f, got[f], w)
				}
			}
			if o, e, code := runCmdEnv(t, env, "check", out, "--json"); code != 0 {
				t.Fatalf("check: %d %s %s", code, o, e)
			}
			before := indexFiles(t, out)
			o, e, code = runCmdEnv(t, env, append(args, "--json")...)
			v = migrateJSON{}
			if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Copied != 0 {
				t.Fatalf("re-run: exit %d %v %q %q", code, err, o, e)
			}
			for p, b := range indexFiles(t, out) {
				if !bytes.Equal(before[p], b) {
					t.Errorf("the re-run changed %s", p)
				}
			}
			// an export into the migrated archive finds nothing new either
			if o, e, code := runCmdEnv(t, env, append([]string{"export", "--to", format, "--out", out, "--json"}, from...)...); code != 0 || !strings.Contains(o, `"messages": 0`) && !strings.Contains(o, `"messages":0`) {
				t.Fatalf("export after migrate: %d %s %s", code, o, e)
			}
			noStateFiles(t, state)
		})
	}
}

// indexFiles returns the index files (.mailmove/index/*.jsonl) of an
// archive.
func indexFiles(t *testing.T, out string) map[string][]byte {
	t.Helper()
	res := map[string][]byte{}
	paths, _ := filepath.Glob(filepath.Join(out, ".mailmove", "index", "*.jsonl"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		res[p] = b
	}
	if len(res) == 0 {
		t.Fatalf("%s has no index", out)
	}
	return res
}

// migrate --to DIR killed with SIGKILL at random moments, then run to the
// end: the archive holds exactly what a clean export holds, check passes.
func TestMigrateToArchiveKillAndResume(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, testmail.Gen(500, []string{"INBOX", "Sent", "Archive/2024"}, 8))
	ca := filepath.Join(d.Dir, "cert.pem")
	for _, format := range []string{"mbox", "eml"} {
		t.Run(format, func(t *testing.T) {
			state := t.TempDir()
			env := []string{"MAILMOVE_FROM_PASSWORD=pw", "XDG_STATE_HOME=" + state}
			ref := filepath.Join(t.TempDir(), "export")
			if _, e, code := runCmdEnv(t, env, "export", "--to", format, "--out", ref, "--from", "imaps://src@"+d.TLSAddr, "--from-ca-file", ca); code != 0 {
				t.Fatalf("export: %d %s", code, e)
			}
			out := filepath.Join(t.TempDir(), "migrated")
			args := []string{"migrate", "--to", out, "--archive-format", format, "--from", "imaps://src@" + slowProxy(t, d.TLSAddr), "--from-ca-file", ca}
			if kills := killRuns(t, 10, 7, env, args...); kills == 0 {
				t.Fatal("no run was killed")
			}
			o, e, code := runCmdEnv(t, env, append(args, "--json")...)
			var v migrateJSON
			if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || len(v.Check.Missing) != 0 {
				t.Fatalf("final migrate: exit %d %v %q %q", code, err, o, e)
			}
			want, got := contents(t, ref), contents(t, out)
			for f, w := range want {
				if strings.Join(got[f], ",") != strings.Join(w, ",") {
					t.Fatalf("folder %s: %d messages, export holds %d (or different ones)", f, len(got[f]), len(w))
				}
			}
			if len(got) != len(want) {
				t.Fatalf("folders: %d, export has %d", len(got), len(want))
			}
			if o, e, code := runCmdEnv(t, env, "check", out, "--json"); code != 0 {
				t.Fatalf("check: %d %s %s", code, o, e)
			}
			noStateFiles(t, state)
		})
	}
}

// migrate --to DIR --encrypt-to: an encrypted archive; no journal, no
// Message-ID in clear; a re-run copies nothing; check passes with the
// identity.
func TestMigrateToEncryptedArchive(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testmail.Mem(t)
	msgs := testmail.Gen(15, []string{"INBOX", "Secret Plans"}, 5)
	testmail.Put(t, testmail.MemConfig(t, srv.Addr), msgs)
	state := t.TempDir()
	env := []string{"MAILMOVE_FROM_PASSWORD=secret", "XDG_STATE_HOME=" + state}
	out := filepath.Join(t.TempDir(), "sealed")
	args := []string{"migrate", "--from", "imap://alice@" + srv.Addr + "?tls=none", "--to", out, "--encrypt-to", id.Recipient().String(), "--compress", "zstd", "--json"}
	for run, wantCopied := range []int{15, 0} {
		o, e, code := runCmdEnv(t, env, args...)
		var v migrateJSON
		if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Copied != wantCopied {
			t.Fatalf("run %d: exit %d %v %q %q", run, code, err, o, e)
		}
	}
	for p, b := range indexFiles(t, out) {
		for _, m := range msgs {
			i := bytes.Index(m.Raw, []byte("Message-ID: <"))
			if i < 0 {
				continue
			}
			rest := m.Raw[i+len("Message-ID: <"):]
			if mid := rest[:bytes.IndexByte(rest, '>')]; bytes.Contains(b, mid) {
				t.Fatalf("%s holds Message-ID %s in clear", p, mid)
			}
		}
	}
	if o, e, code := runCmdEnv(t, env, "check", out, "--identity", idFile, "--json"); code != 0 || !strings.Contains(o, `"messages": 15`) && !strings.Contains(o, `"messages":15`) {
		t.Fatalf("check: %d %s %s", code, o, e)
	}
	noStateFiles(t, state)
}

// --keep-archive into an mbox archive: the archive holds every message
// once; a re-run adds nothing to it.
func TestMigrateKeepArchiveMbox(t *testing.T) {
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(20, []string{"INBOX", "Sent"}, 6))
	dst := testmail.Mem(t)
	arch := filepath.Join(t.TempDir(), "arch")
	env := []string{"MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret", "XDG_STATE_HOME=" + t.TempDir()}
	args := []string{"migrate", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", "imap://alice@" + dst.Addr + "?tls=none", "--keep-archive", arch, "--archive-format", "mbox"}
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("migrate: %d %s", code, e)
	}
	o, e, code := runCmdEnv(t, env, "check", arch, "--json")
	var v struct {
		Messages int `json:"messages"`
	}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || v.Messages != 20 {
		t.Fatalf("check: exit %d %v %q %q", code, err, o, e)
	}
	before := indexFiles(t, arch)
	// new mail: the archive gets it too, and nothing else
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(2, []string{"Sent"}, 66))
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("second migrate: %d %s", code, e)
	}
	got := contents(t, arch)
	if len(got["INBOX"])+len(got["Sent"]) != 22 {
		t.Fatalf("archive: %v", got)
	}
	for p, b := range indexFiles(t, arch) {
		if !bytes.HasPrefix(b, before[p]) {
			t.Errorf("%s was rewritten, not appended to", p)
		}
	}
	if len(messageIDs(t, dst.Addr)["Sent"]) != len(got["Sent"]) {
		t.Fatalf("target Sent %d, archive Sent %d", len(messageIDs(t, dst.Addr)["Sent"]), len(got["Sent"]))
	}
}

// Bridge stand-in -> archive with migrate --to DIR: each Proton message
// once in each of its folders, the one in no folder in All Mail, labels in
// the index, as export places them.
func TestMigrateBridgeToArchive(t *testing.T) {
	br, want, env := startBridge(t)
	env = append(env, "XDG_STATE_HOME="+t.TempDir())
	out := filepath.Join(t.TempDir(), "bridge")
	ref := filepath.Join(t.TempDir(), "export")
	from := []string{"--from", "bridge://me@proton.test@" + br.Addr, "--from-ca-file", filepath.Join(br.Dir, "cert.pem")}
	// the stand-in serves one message Bridge could not decrypt: reported
	// (exit 3), stored as served
	if _, e, code := runCmdEnv(t, env, append([]string{"export", "--to", "eml", "--out", ref}, from...)...); code != exitPartial {
		t.Fatalf("export: %d %s", code, e)
	}
	args := append([]string{"migrate", "--to", out, "--json"}, from...)
	o, e, code := runCmdEnv(t, env, args...)
	var v migrateJSON
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != exitPartial || len(v.Failed) != 0 || len(v.Undecryptable) != 1 || len(v.Check.Missing) != 0 {
		t.Fatalf("migrate: exit %d %v %q %q", code, err, o, e)
	}
	bridgePlaced(t, out, want)
	labels := func(dir string) map[string]string {
		res := map[string]string{}
		for f, recs := range recordsOf(t, dir) {
			for _, r := range recs {
				l := append([]string(nil), r.Labels...)
				res[f+" "+r.PMInternalID] = strings.Join(sortedCopy(l), ",")
			}
		}
		return res
	}
	wantL, gotL := labels(ref), labels(out)
	nLabelled := 0
	for k, l := range wantL {
		if gotL[k] != l {
			t.Errorf("%s: labels %q, export records %q", k, gotL[k], l)
		}
		if l != "" {
			nLabelled++
		}
	}
	if nLabelled == 0 {
		t.Fatal("the stand-in's messages carry no label")
	}
	o, e, code = runCmdEnv(t, env, args...)
	v = migrateJSON{}
	if err := json.Unmarshal([]byte(o), &v); err != nil || code != 0 || !v.OK || v.Copied != 0 {
		t.Fatalf("re-run: exit %d %v %q %q", code, err, o, e)
	}
	undecryptable := 0
	for _, recs := range recordsOf(t, out) {
		for _, r := range recs {
			if r.Undecryptable {
				undecryptable++
			}
		}
	}
	if undecryptable != 1 {
		t.Errorf("%d records marked undecryptable, want 1", undecryptable)
	}
	if o, e, code := runCmdEnv(t, env, "check", out, "--json"); code != 0 {
		t.Fatalf("check: %d %s %s", code, o, e)
	}
}

// recordsOf reads an archive's records, folder by folder (aliases left
// out).
func recordsOf(t *testing.T, dir string) map[string][]archive.Record {
	t.Helper()
	a, err := archive.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	res := map[string][]archive.Record{}
	for _, f := range a.Folders() {
		recs, err := a.Records(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !r.Alias {
				res[f] = append(res[f], r)
			}
		}
	}
	return res
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}
