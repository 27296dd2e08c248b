package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/gmailstub"
)

// gmailArchive reads an archive: the folder of every live record by
// X-GM-MSGID (a message recorded twice fails the test) and the X-GM-MSGIDs
// of the deleted area, in the order of deleted.jsonl.
func gmailArchive(t *testing.T, out string) (map[uint64]string, []uint64, []archive.Deleted) {
	t.Helper()
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	live := map[uint64]string{}
	for _, f := range a.Folders() {
		recs, err := a.Records(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			id, err := strconv.ParseUint(r.GmailMsgID, 10, 64)
			if err != nil {
				t.Fatalf("%s UID %d: gm_msgid %q: %v", f, r.UID, r.GmailMsgID, err)
			}
			if at, dup := live[id]; dup {
				t.Fatalf("X-GM-MSGID %d archived twice: in %s and %s", id, at, f)
			}
			live[id] = f
		}
	}
	del, err := a.DeletedRecords()
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, d := range del {
		id, err := strconv.ParseUint(d.GmailMsgID, 10, 64)
		if err != nil {
			t.Fatalf("deleted.jsonl: gm_msgid %q: %v", d.GmailMsgID, err)
		}
		ids = append(ids, id)
	}
	return live, ids, del
}

// treeSum is every file of a directory tree with the SHA-256 of its
// content (the archive's lock file left out: taking it is not a write).
func treeSum(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasSuffix(rel, "lock") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(s[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGmailBackupMirror: backup --mirror of a Gmail account (the stand-in)
// into an .eml and an mbox archive, mirroring from the first run or only
// after runs without it. On the server one message of INBOX, the only
// message of the label Solo and the only one archived in Trash are deleted
// for good, one moves from INBOX to
// a user label only, one moves to Trash. Without --mirror the deleted ones
// stay in their folders. With it they move to the deleted area
// (deleted.jsonl, .deleted/ for .eml), once each; the relabelled and the
// trashed ones stay where they were archived, once, not fetched again;
// check is clean; another --mirror run moves and writes nothing.
func TestGmailBackupMirror(t *testing.T) {
	for _, format := range []string{"eml", "mbox"} {
		for _, from := range []string{"first", "later"} {
			t.Run(format+"-"+from, func(t *testing.T) {
				s := gmailstub.StartT(t, gmailstub.Options{})
				d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
				stays := s.Add(gmailstub.Mail("m1@x", "stays", 400), d, 0, []string{`\Inbox`})
				gone := s.Add(gmailstub.Mail("m2@x", "deleted for good", 400), d, 0, []string{`\Inbox`}, `\Seen`)
				relabelled := s.Add(gmailstub.Mail("m3@x", "inbox to label", 400), d, 0, []string{`\Inbox`, "Work"})
				trashed := s.Add(gmailstub.Mail("m4@x", "to trash", 400), d, 0, []string{`\Inbox`})
				solo := s.Add(gmailstub.Mail("m5@x", "only one of its label", 400), d, 0, []string{"Solo"})
				sent := s.Add(gmailstub.Mail("m6@x", "sent", 400), d, 0, []string{`\Sent`, "Work"})
				binned := s.Add(gmailstub.Mail("m7@x", "in Trash, then deleted for good", 400), d, 0, []string{`\Trash`})

				out := filepath.Join(t.TempDir(), "a")
				cfg := writeConfig(t, fmt.Sprintf(`
[accounts.gmail]
url = "imaps://alice@gmail.com@%s"
ca_file = %q
password_file = %q

[jobs.gmail]
account = "gmail"
format = %q
out = %q
`, s.Addr, s.CAFile, pwFile(t, gmailstub.Password), format, out))
				backup := func(mirror bool) (moved int) {
					t.Helper()
					args := []string{"backup", "--config", cfg, "--json"}
					if mirror {
						args = append(args, "--mirror")
					}
					o, e, code := runCmdEnv(t, nil, args...)
					if code != 0 {
						t.Fatalf("backup (mirror %v): exit %d: %s %s", mirror, code, o, e)
					}
					var r struct {
						Jobs []struct {
							Mirrored int `json:"moved_to_deleted"`
						} `json:"jobs"`
					}
					if err := json.Unmarshal([]byte(o), &r); err != nil || len(r.Jobs) != 1 {
						t.Fatalf("backup --json: %v: %s", err, o)
					}
					return r.Jobs[0].Mirrored
				}
				check := func(when string) {
					t.Helper()
					if o, e, code := runCmd(t, "check", out); code != 0 {
						t.Fatalf("check %s: exit %d: %s %s", when, code, o, e)
					}
				}

				if moved := backup(from == "first"); moved != 0 {
					t.Fatalf("first run moved %d", moved)
				}
				live, _, _ := gmailArchive(t, out)
				if len(live) != 7 || live[relabelled] != "INBOX" || live[trashed] != "INBOX" || live[solo] != "Solo" || live[binned] != "[Gmail]/Trash" {
					t.Fatalf("first run archived %v", live)
				}
				where := live // where each message was archived

				s.Expunge(gone)
				s.Expunge(solo)
				s.Expunge(binned)                               // Trash emptied: its folder's only message
				s.Relabel(relabelled, []string{"Work"})         // out of INBOX, its folder would now be Work
				s.Relabel(trashed, []string{`\Trash`}, `\Seen`) // to Trash

				if from == "later" {
					// Retention: without --mirror nothing leaves the archive
					for i := range 2 {
						if moved := backup(false); moved != 0 {
							t.Fatalf("run without --mirror moved %d", moved)
						}
						live, del, _ := gmailArchive(t, out)
						if len(del) != 0 || len(live) != 7 || live[gone] != "INBOX" || live[solo] != "Solo" || live[binned] != "[Gmail]/Trash" {
							t.Fatalf("run %d without --mirror: live %v, deleted %v", i+1, live, del)
						}
						check("without --mirror")
					}
				}

				if moved := backup(true); moved != 3 {
					t.Errorf("--mirror moved %d messages to the deleted area, want 3 (m2, m5, m7)", moved)
				}
				live, del, recs := gmailArchive(t, out)
				sort.Slice(del, func(i, k int) bool { return del[i] < del[k] })
				want := []uint64{gone, solo, binned}
				sort.Slice(want, func(i, k int) bool { return want[i] < want[k] })
				if !slices.Equal(del, want) {
					t.Errorf("deleted area holds %v, want %v (m2, m5 and m7, once each)", del, want)
				}
				for _, id := range []uint64{stays, relabelled, trashed, sent} {
					if live[id] != where[id] {
						t.Errorf("message %d is in %q, was archived in %q", id, live[id], where[id])
					}
				}
				if len(live) != 4 {
					t.Errorf("archive's folders hold %d messages, want 4: %v", len(live), live)
				}
				day := time.Now().UTC().Format("2006-01-02")
				for _, r := range recs {
					if r.DeletedAt.IsZero() || time.Since(r.DeletedAt) > time.Hour {
						t.Errorf("deleted %s: deleted_at %v", r.GmailMsgID, r.DeletedAt)
					}
					if format != "eml" {
						continue
					}
					if !strings.HasPrefix(r.File, archive.DeletedDir+"/"+day+"/"+r.Folder+"/") {
						t.Errorf("deleted %s of %s moved to %s", r.GmailMsgID, r.Folder, r.File)
					}
					if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(r.File))); err != nil {
						t.Error(err)
					}
				}
				for id, n := range s.Stats().Served {
					if n != 1 {
						t.Errorf("message %d served %d times", id, n)
					}
				}
				check("after --mirror")

				// nothing more to do: nothing moved, nothing written
				before := treeSum(t, out)
				if moved := backup(true); moved != 0 {
					t.Errorf("another --mirror run moved %d", moved)
				}
				after := treeSum(t, out)
				if len(before) != len(after) {
					t.Errorf("another --mirror run changed the archive's files: %d before, %d after", len(before), len(after))
				}
				for p, h := range before {
					if after[p] != h {
						t.Errorf("another --mirror run wrote %s", p)
					}
				}
				if live2, del2, _ := gmailArchive(t, out); len(live2) != 4 || len(del2) != 3 {
					t.Errorf("after another run: live %v, deleted %v", live2, del2)
				}
				check("after another run")
			})
		}
	}
}

// TestGmailMirrorAfterLabelFolders: an archive first written with
// --gmail-labels folders (one copy per label mailbox, records without
// X-GM-MSGID), then backed up the default way with --mirror. A plain
// archive is refused, naming the fix (the default model would archive
// every message again); an encrypted one (its records are sealed: not
// checked) must at least lose nothing: nothing was deleted on the server,
// so nothing goes to the deleted area (a record without Gmail ID cannot be
// told gone).
func TestGmailMirrorAfterLabelFolders(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		t.Run(fmt.Sprint("encrypted=", encrypted), func(t *testing.T) {
			s := gmailstub.StartT(t, gmailstub.Options{})
			d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
			s.Add(gmailstub.Mail("f1@x", "inbox", 400), d, 0, []string{`\Inbox`})
			s.Add(gmailstub.Mail("f2@x", "inbox and label", 400), d, 0, []string{`\Inbox`, "Work"})
			s.Add(gmailstub.Mail("f3@x", "label only", 400), d, 0, []string{"Work"})
			s.Add(gmailstub.Mail("f4@x", "archived", 400), d, 0, nil)
			out := filepath.Join(t.TempDir(), "a")
			pw := pwFile(t, gmailstub.Password)
			args := []string{"export", "--from", "imaps://alice@gmail.com@" + s.Addr, "--from-ca-file", s.CAFile, "--from-password-file", pw,
				"--gmail-labels", "folders", "--to", "eml", "--out", out}
			enc := ""
			if encrypted {
				id, err := age.GenerateX25519Identity()
				if err != nil {
					t.Fatal(err)
				}
				args = append(args, "--encrypt-to", id.Recipient().String())
				enc = fmt.Sprintf("encrypt_to = [%q]\n", id.Recipient().String())
			}
			if o, e, code := runCmd(t, args...); code != 0 {
				t.Fatalf("export --gmail-labels folders: exit %d: %s %s", code, o, e)
			}
			cfg := writeConfig(t, fmt.Sprintf(`
[accounts.gmail]
url = "imaps://alice@gmail.com@%s"
ca_file = %q
password_file = %q

[jobs.gmail]
account = "gmail"
format = "eml"
out = %q
%s`, s.Addr, s.CAFile, pw, out, enc))
			o, e, code := runCmdEnv(t, nil, "backup", "--config", cfg, "--json", "--mirror")
			if !encrypted {
				if code == 0 || !strings.Contains(e, "--gmail-labels folders") {
					t.Fatalf("backup into a --gmail-labels folders archive: exit %d, want a refusal naming --gmail-labels folders: %s %s", code, o, e)
				}
				return
			}
			var r struct {
				Jobs []struct {
					Mirrored int `json:"moved_to_deleted"`
				} `json:"jobs"`
			}
			if err := json.Unmarshal([]byte(o), &r); err != nil || code != 0 || len(r.Jobs) != 1 {
				t.Fatalf("backup --mirror: exit %d, %v: %s %s", code, err, o, e)
			}
			if r.Jobs[0].Mirrored != 0 {
				t.Fatalf("backup --mirror moved %d messages still on Gmail to the deleted area", r.Jobs[0].Mirrored)
			}
		})
	}
}
