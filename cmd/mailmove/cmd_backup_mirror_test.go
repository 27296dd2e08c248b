//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// midOf is the Message-ID of a seeded message.
var midOf = regexp.MustCompile(`Message-ID: <([^>]+)>`)

// archiveIDs reads an archive with the identity in idFile (none: "") and
// returns its folders' Message-IDs and those of its deleted area, sorted.
func archiveIDs(t *testing.T, out, idFile string) (map[string][]string, []string) {
	t.Helper()
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if idFile != "" {
		ids, err := archive.ReadIdentityFile(idFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.SetIdentities(ids); err != nil {
			t.Fatal(err)
		}
	}
	folders := map[string][]string{}
	for _, f := range a.Folders() {
		recs, err := a.Records(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			folders[f] = append(folders[f], r.MessageID)
		}
		sort.Strings(folders[f])
	}
	del, err := a.DeletedRecords()
	if err != nil {
		t.Fatal(err)
	}
	var gone []string
	for _, d := range del {
		gone = append(gone, d.MessageID)
	}
	sort.Strings(gone)
	return folders, gone
}

// serverIDs returns the server's folders' Message-IDs, sorted.
func serverIDs(t *testing.T, addr string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for f, ms := range testmail.Held(t, testmail.MemConfig(t, addr)) {
		for _, m := range ms {
			if s := midOf.FindSubmatch(m.Raw); s != nil {
				out[f] = append(out[f], string(s[1]))
			}
		}
		sort.Strings(out[f])
	}
	return out
}

// TestBackupMirrorSealed: --mirror on encrypted (age) and compressed-only
// (zstd) archives, .eml and mbox. A third of every folder is deleted on
// the server; backup --mirror runs are killed with SIGKILL at random
// moments, then one runs to the end: the archive's folders hold exactly
// what the server holds, its deleted area exactly the deleted messages
// (each once), check passes (with the identity, and without it on the
// encrypted one), a restore with import gives exactly the server's
// messages, and another --mirror run moves nothing.
func TestBackupMirrorSealed(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(t.TempDir(), "id.txt")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"eml", "mbox"} {
		for _, sealing := range []string{"encrypted", "compressed"} {
			t.Run(format+"-"+sealing, func(t *testing.T) {
				srv := seedServer(t, 120)
				out := filepath.Join(t.TempDir(), "a")
				extra, ident := `compress = "zstd"`, ""
				if sealing == "encrypted" {
					extra, ident = fmt.Sprintf("encrypt_to = [%q]", id.Recipient().String()), idFile
				}
				cfg := writeConfig(t, memJob(t, srv.Addr, format, out, extra))
				if _, e, code := runCmdEnv(t, nil, "backup", "--config", cfg); code != 0 {
					t.Fatalf("backup: exit %d %s", code, e)
				}
				before := serverIDs(t, srv.Addr)
				// delete every third message of every folder on the server
				u, _ := account.ParseURL("imap://alice@" + srv.Addr + "?tls=none")
				c, err := (&account.Config{URL: u, Password: account.PasswordSource{Env: "MAILMOVE_SEED_PW"}}).Dial(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for f := range before {
					if _, err := c.Select(f, nil).Wait(); err != nil {
						t.Fatal(err)
					}
					sd, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
					if err != nil {
						t.Fatal(err)
					}
					var del imap.UIDSet
					for k, uid := range sd.AllUIDs() {
						if k%3 == 0 {
							del.AddNum(uid)
						}
					}
					if err := c.Store(del, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
						t.Fatal(err)
					}
					if err := c.Expunge().Close(); err != nil {
						t.Fatal(err)
					}
				}
				c.Close()
				after := serverIDs(t, srv.Addr)
				var deleted []string
				for f, ids := range before {
					kept := map[string]bool{}
					for _, m := range after[f] {
						kept[m] = true
					}
					for _, m := range ids {
						if !kept[m] {
							deleted = append(deleted, m)
						}
					}
				}
				sort.Strings(deleted)
				if len(deleted) < 30 {
					t.Fatalf("deleted only %d messages on the server", len(deleted))
				}

				// Each run is killed as soon as it has appended to
				// deleted.jsonl: it stops between steps of the move
				// (or, if it was quicker than the kill, just after).
				dp := filepath.Join(out, filepath.FromSlash(archive.DeletedIndex))
				size := func() int64 {
					fi, err := os.Stat(dp)
					if err != nil {
						return 0
					}
					return fi.Size()
				}
				for run := 0; run < 6; run++ {
					if !killWhenGrown(t, size, []string{"XDG_STATE_HOME=" + t.TempDir()}, "backup", "--config", cfg, "--mirror") {
						break // it ran to the end
					}
					_, gone := archiveIDs(t, out, ident)
					t.Logf("run %d killed; %d of %d moved", run, len(gone), len(deleted))
				}
				if o, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--mirror", "--json"); code != 0 {
					t.Fatalf("--mirror after the killed runs: exit %d %s %s", code, o, e)
				}

				folders, gone := archiveIDs(t, out, ident)
				for f, ids := range after {
					if strings.Join(folders[f], " ") != strings.Join(ids, " ") {
						t.Errorf("folder %s: the archive holds %v, the server %v", f, folders[f], ids)
					}
				}
				if strings.Join(gone, " ") != strings.Join(deleted, " ") {
					t.Errorf("deleted area holds %v, want %v", gone, deleted)
				}
				total := fmt.Sprintf("%d messages", len(deleted)+len(flatten(after)))
				checkArgs := []string{"check", out}
				if ident != "" {
					checkArgs = []string{"check", "--identity", ident, out}
					if o, e, code := runCmd(t, "check", out); code != 0 || !strings.Contains(o, total) {
						t.Fatalf("check without the identity: exit %d %s %s", code, o, e)
					}
				}
				if o, e, code := runCmd(t, checkArgs...); code != 0 || !strings.Contains(o, total) {
					t.Fatalf("%v: exit %d %s %s (want %s)", checkArgs, code, o, e, total)
				}
				// restore: exactly the messages on the server
				dst := testmail.Mem(t)
				args := []string{"import", "--to", "imap://alice@" + dst.Addr + "?tls=none", out}
				if ident != "" {
					args = append([]string{"import", "--identity", ident}, args[1:]...)
				}
				if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, args...); code != 0 {
					t.Fatalf("import: exit %d %s", code, e)
				}
				restored := serverIDs(t, dst.Addr)
				for f, ids := range after {
					if strings.Join(restored[f], " ") != strings.Join(ids, " ") {
						t.Errorf("restored folder %s: %v, want %v", f, restored[f], ids)
					}
				}
				if len(flatten(restored)) != len(flatten(after)) {
					t.Errorf("restored %d messages, the server holds %d", len(flatten(restored)), len(flatten(after)))
				}
				// the deleted area of an .eml archive imports back: each
				// deleted message in its folder, once
				if format == "eml" {
					dst := testmail.Mem(t)
					args := []string{"import", "--to", "imap://alice@" + dst.Addr + "?tls=none", filepath.Join(out, ".deleted")}
					if ident != "" {
						if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, args...); code != exitUsage || !strings.Contains(e, "--identity") {
							t.Fatalf("import of an encrypted .deleted without --identity: exit %d %s", code, e)
						}
						args = append([]string{"import", "--identity", ident}, args[1:]...)
					}
					if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, args...); code != 0 {
						t.Fatalf("import of .deleted: exit %d %s", code, e)
					}
					got := serverIDs(t, dst.Addr)
					for f, ids := range before {
						var want []string
						kept := map[string]bool{}
						for _, m := range after[f] {
							kept[m] = true
						}
						for _, m := range ids {
							if !kept[m] {
								want = append(want, m)
							}
						}
						if strings.Join(got[f], " ") != strings.Join(want, " ") {
							t.Errorf("restored from .deleted, folder %s: %v, want %v", f, got[f], want)
						}
					}
					if len(flatten(got)) != len(deleted) {
						t.Errorf("restored %d from .deleted, want %d", len(flatten(got)), len(deleted))
					}
				}
				// nothing more to move
				if o, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--mirror", "--json"); code != 0 || !strings.Contains(o, `"moved_to_deleted": 0`) {
					t.Fatalf("another --mirror run: exit %d %s %s", code, o, e)
				}
			})
		}
	}
}

// killWhenGrown starts mailmove with args and kills it with SIGKILL as
// soon as size() grows; it reports whether it killed the run (false: the
// run ended first).
func killWhenGrown(t *testing.T, size func() int64, env []string, args ...string) bool {
	t.Helper()
	s0 := size()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case <-done:
			return false
		default:
		}
		if size() > s0 {
			cmd.Process.Kill()
			<-done
			return true
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func flatten(m map[string][]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v...)
	}
	return out
}
