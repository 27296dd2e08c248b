package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/mailmove/mailmove/message"
)

// crash drops a writer the way a killed process does: the lock goes, and
// folders.json keeps what it held before (nothing saved).
func crash(a *Archive) {
	a.mu.Lock()
	a.dirty = false
	a.mu.Unlock()
	a.Close()
}

// MoveDeleted on encrypted, compressed and encrypted+compressed archives,
// .eml and mbox, with a writer that holds only the recipients: nothing
// secret in clear in any file (gone lines and deleted.jsonl included);
// without the identity the folder no longer holds the moved messages,
// the deleted area gives clear records and Check sees every file; with
// it the deleted records have their secrets back (Message-ID, flags,
// SHA-256), every byte checks and reads back. A run stopped at each step
// (files moved; deleted.jsonl written; a torn deleted.jsonl line; a torn
// gone line) is finished by the next.
func TestMoveDeletedSealed(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	// where the stopped run stops: how much of deleted.jsonl and of the
	// folder's new index lines stay on disk (-1: all; a fraction cuts a
	// line in the middle)
	stops := []struct {
		name       string
		del, index float64
	}{
		{"whole", -1, -1},
		{"files moved", 0, 0},
		{"deleted.jsonl torn", 0.7, 0},
		{"deleted.jsonl written", -1, 0},
		{"gone lines torn", -1, 0.6},
	}
	for _, f := range []Format{EML, Mbox} {
		for _, s := range []struct {
			enc  bool
			comp string
		}{{true, ""}, {true, CompressionZstd}, {false, CompressionZstd}} {
			for _, stop := range stops {
				t.Run(fmt.Sprintf("%s-enc=%v-%s/%s", f, s.enc, s.comp, stop.name), func(t *testing.T) {
					seal := Sealing{Compress: s.comp}
					if s.enc {
						seal.Recipients = []age.Recipient{id.Recipient()}
					}
					root := filepath.Join(t.TempDir(), "a")
					a, err := OpenSealed(root, f, false, "", "test", seal)
					if err != nil {
						t.Fatal(err)
					}
					w, err := a.OpenFolder("INBOX", []string{"INBOX"})
					if err != nil {
						t.Fatal(err)
					}
					raws := map[uint32]string{}
					for i := 1; i <= 6; i++ {
						raws[uint32(i)] = sealedMessage(i)
						m := &message.Meta{UIDValidity: 7, UID: uint32(i), Flags: []string{"\\Seen", "SecretKeyword"}, InternalDate: time.Unix(1700000000+int64(i), 0)}
						if _, err := w.Put(m, strings.NewReader(raws[uint32(i)]), nil); err != nil {
							t.Fatal(err)
						}
					}
					if err := w.Close(); err != nil {
						t.Fatal(err)
					}
					a.Close()

					// the writer of a later run: recipients only
					when := time.Date(2026, 12, 3, 5, 0, 0, 0, time.UTC)
					move := func() *Archive {
						a, err := OpenSealed(root, f, false, "", "test", seal)
						if err != nil {
							t.Fatal(err)
						}
						recs, err := a.Records("INBOX")
						if err != nil {
							t.Fatal(err)
						}
						var gone []Record
						for _, r := range recs {
							if r.UID == 2 || r.UID == 5 {
								gone = append(gone, r)
							}
						}
						if n, err := a.MoveDeleted("INBOX", gone, when); err != nil || n != len(gone) {
							t.Fatalf("MoveDeleted: %d %v", n, err)
						}
						return a
					}
					dp := filepath.Join(root, filepath.FromSlash(DeletedIndex))
					ip := filepath.Join(root, StateDir, "index", indexName("INBOX"))
					size := func(p string) int64 {
						fi, err := os.Stat(p)
						if err != nil {
							return 0
						}
						return fi.Size()
					}
					if stop.del >= 0 {
						d0, i0 := size(dp), size(ip)
						a := move()
						d1, i1 := size(dp), size(ip)
						crash(a)
						if err := os.Truncate(dp, d0+int64(stop.del*float64(d1-d0))); err != nil {
							t.Fatal(err)
						}
						if err := os.Truncate(ip, i0+int64(stop.index*float64(i1-i0))); err != nil {
							t.Fatal(err)
						}
						// the stopped run's messages are still in their
						// folder for a reader, with or without the identity
						ro, err := OpenReadOnly(root)
						if err != nil {
							t.Fatal(err)
						}
						if err := ro.SetIdentities([]age.Identity{id}); err != nil {
							t.Fatal(err)
						}
						if recs, err := ro.Records("INBOX"); err != nil || len(recs) != 6 {
							t.Fatalf("after the stop: %d records, %v", len(recs), err)
						}
						ro.Close()
					}
					a = move()
					if err := a.Close(); err != nil {
						t.Fatal(err)
					}

					if s.enc {
						filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
							if err != nil || fi.IsDir() {
								return err
							}
							b, _ := os.ReadFile(p)
							for _, secret := range []string{"SECRETSUBJECT", "secret-mid", "SecretKeyword", "SECRETBODY", sha(raws[2]), sha(raws[5])} {
								if bytes.Contains(b, []byte(secret)) {
									t.Errorf("%s holds %q in clear", p, secret)
								}
							}
							return nil
						})
					}

					ro, err := OpenReadOnly(root)
					if err != nil {
						t.Fatal(err)
					}
					defer ro.Close()
					for _, withID := range []bool{false, true} {
						if withID {
							if err := ro.SetIdentities([]age.Identity{id}); err != nil {
								t.Fatal(err)
							}
						}
						recs, err := ro.Records("INBOX")
						if err != nil || len(recs) != 4 {
							t.Fatalf("identity %v: INBOX holds %d, %v", withID, len(recs), err)
						}
						for _, r := range recs {
							if r.UID == 2 || r.UID == 5 {
								t.Fatalf("identity %v: UID %d still in INBOX", withID, r.UID)
							}
						}
						del, err := ro.DeletedRecords()
						if err != nil || len(del) != 2 || del[0].UID != 2 || del[1].UID != 5 {
							t.Fatalf("identity %v: deleted %+v %v", withID, del, err)
						}
						for _, d := range del {
							if !d.DeletedAt.Equal(when) {
								t.Fatalf("deleted_at %v", d.DeletedAt)
							}
							if f == EML && !strings.HasPrefix(d.File, DeletedDir+"/2026-12-03/INBOX/") {
								t.Fatalf("moved to %s", d.File)
							}
							if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(d.File))); err != nil {
								t.Fatal(err)
							}
							if withID || !s.enc {
								if d.MessageID != fmt.Sprintf("secret-mid-%d@example.org", d.UID) || d.SHA256 != sha(raws[d.UID]) || len(d.Flags) != 2 {
									t.Fatalf("identity %v: the deleted record lacks its secrets: %+v", withID, d)
								}
								rc, err := ro.OpenMessage(d.Record)
								if err != nil {
									t.Fatal(err)
								}
								b, err := io.ReadAll(rc)
								rc.Close()
								if err != nil || string(b) != raws[d.UID] {
									t.Fatalf("UID %d reads back %d bytes, %v", d.UID, len(b), err)
								}
							} else if d.MessageID != "" || d.SHA256 != "" || d.Flags != nil {
								t.Fatalf("a clear deleted record holds secrets: %+v", d)
							}
						}
						res, err := ro.Check()
						if err != nil || len(res.Problems) != 0 || res.Messages != 6 {
							t.Fatalf("identity %v: check %+v %v", withID, res, err)
						}
					}
				})
			}
		}
	}
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// A deleted.jsonl line of an encrypted archive whose message has no
// sealed record in its folder's index is damage for a reader with the
// identity (as a clear index line without a sealed part is).
func TestDeletedSealedDamage(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "a")
	a, err := OpenSealed(root, EML, false, "", "test", Sealing{Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := a.OpenFolder("INBOX", []string{"INBOX"})
	m := &message.Meta{UIDValidity: 7, UID: 1, Flags: []string{}, InternalDate: time.Unix(1700000000, 0)}
	if _, err := w.Put(m, strings.NewReader(sealedMessage(1)), nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	a.Close()
	line := `{"folder":"INBOX","uidvalidity":7,"uid":9,"flags":null,"internaldate":"2026-01-01T00:00:00Z","size":10,"sha256":"","file":"x.eml.age","deleted_at":"2026-12-03T05:00:00Z"}` + "\n"
	if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(DeletedIndex)), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(root)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if del, err := ro.DeletedRecords(); err != nil || len(del) != 1 {
		t.Fatalf("without the identity: %+v %v", del, err)
	}
	ro.SetIdentities([]age.Identity{id})
	if _, err := ro.DeletedRecords(); err == nil || !strings.Contains(err.Error(), "no sealed record") {
		t.Fatalf("with the identity: %v", err)
	}
	if res, err := ro.Check(); err != nil || len(res.Problems) == 0 {
		t.Fatalf("check: %+v %v", res, err)
	}
}

// A run that moved an .eml file and was killed before its index lines is
// finished by the next one even on a later day (as a nightly backup's
// next run is): the file is found where the first run put it.
func TestMoveDeletedNextDay(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("enc=%v", enc), func(t *testing.T) {
			var seal Sealing
			if enc {
				seal.Recipients = []age.Recipient{id.Recipient()}
			}
			root := filepath.Join(t.TempDir(), "a")
			a, err := OpenSealed(root, EML, false, "", "test", seal)
			if err != nil {
				t.Fatal(err)
			}
			w, _ := a.OpenFolder("INBOX", []string{"INBOX"})
			for i := 1; i <= 3; i++ {
				m := &message.Meta{UIDValidity: 7, UID: uint32(i), Flags: []string{}, InternalDate: time.Unix(1700000000+int64(i), 0)}
				if _, err := w.Put(m, strings.NewReader(sealedMessage(i)), nil); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			a.Close()
			ip := filepath.Join(root, StateDir, "index", indexName("INBOX"))
			fi, _ := os.Stat(ip)
			day1 := time.Date(2026, 12, 3, 23, 0, 0, 0, time.UTC)
			move := func(when time.Time) *Archive {
				a, err := OpenSealed(root, EML, false, "", "test", seal)
				if err != nil {
					t.Fatal(err)
				}
				recs, _ := a.Records("INBOX")
				if n, err := a.MoveDeleted("INBOX", recs[1:2], when); err != nil || n != 1 {
					t.Fatalf("MoveDeleted: %d %v", n, err)
				}
				return a
			}
			crash(move(day1))
			// killed after the move, before any index line
			os.Remove(filepath.Join(root, filepath.FromSlash(DeletedIndex)))
			os.Truncate(ip, fi.Size())
			if err := move(day1.Add(24 * time.Hour)).Close(); err != nil {
				t.Fatal(err)
			}
			ro, err := OpenReadOnly(root)
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			ro.SetIdentities([]age.Identity{id})
			del, err := ro.DeletedRecords()
			if err != nil || len(del) != 1 || !strings.HasPrefix(del[0].File, DeletedDir+"/2026-12-03/INBOX/") || !del[0].DeletedAt.Equal(day1.Add(24*time.Hour)) {
				t.Fatalf("deleted %+v %v", del, err)
			}
			if res, err := ro.Check(); err != nil || len(res.Problems) != 0 || res.Messages != 3 {
				t.Fatalf("check %+v %v", res, err)
			}
		})
	}
}
