package archive

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/ssh"

	"github.com/mailmove/mailmove/message"
)

// sealedMessage is a test message with secrets in its header and body.
func sealedMessage(i int) string {
	return fmt.Sprintf("Message-ID: <secret-mid-%d@example.org>\r\nFrom: Secret Sender <secret.sender@example.org>\r\nSubject: SECRETSUBJECT %d\r\n\r\nFrom here SECRETBODY %d\r\n%s\r\n", i, i, i, strings.Repeat("body text compresses well ", i*40))
}

// Every combination of format, encryption and compression gives every
// message back byte for byte through the index; an encrypted archive shows
// no secret in any file (message files and index), says what to pass
// without an identity, and check sees a flipped byte with the identity.
func TestSealedRoundTrip(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Format{Mbox, EML} {
		for _, enc := range []bool{false, true} {
			for _, comp := range []string{"", CompressionZstd} {
				if !enc && comp == "" {
					continue
				}
				t.Run(fmt.Sprintf("%s-enc=%v-%s", f, enc, comp), func(t *testing.T) {
					s := Sealing{Compress: comp}
					if enc {
						s.Recipients = []age.Recipient{id.Recipient()}
					}
					root := filepath.Join(t.TempDir(), "a")
					const n = 25
					want := map[uint32][32]byte{}
					for run := 0; run < 2; run++ { // two runs: two segments, one appended plain file
						a, err := OpenSealed(root, f, f == Mbox, "", "test", s)
						if err != nil {
							t.Fatal(err)
						}
						// the second run's mbox messages carry status lines
						a.StatusHeaders = f == Mbox && run == 1
						w, err := a.OpenFolder("Secret Folder", []string{"Secret Folder"})
						if err != nil {
							t.Fatal(err)
						}
						for i := run*n + 1; i <= run*n+n; i++ {
							raw := sealedMessage(i)
							want[uint32(i)] = sha256.Sum256([]byte(raw))
							m := &message.Meta{UIDValidity: 7, UID: uint32(i), Flags: []string{"\\Seen", "SecretKeyword"}, InternalDate: time.Unix(1700000000+int64(i), 0)}
							if _, err := w.Put(m, strings.NewReader(raw), nil); err != nil {
								t.Fatal(err)
							}
							if i%10 == 0 {
								if err := w.CommitBackground(); err != nil {
									t.Fatal(err)
								}
							}
						}
						if err := w.Close(); err != nil {
							t.Fatal(err)
						}
						if err := a.Close(); err != nil {
							t.Fatal(err)
						}
					}
					// Mixing is refused.
					other := Sealing{Compress: comp}
					if !enc {
						other.Recipients = []age.Recipient{id.Recipient()}
					}
					var se *SealingError
					if _, err := OpenSealed(root, f, false, "", "test", other); !errors.As(err, &se) {
						t.Fatalf("mixing: %v", err)
					}
					if enc {
						filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
							if err != nil || fi.IsDir() {
								return err
							}
							b, _ := os.ReadFile(p)
							for _, secret := range []string{"SECRET", "secret", "example.org", "from here"} {
								if bytes.Contains(b, []byte(secret)) {
									t.Errorf("%s holds %q in clear", p, secret)
								}
							}
							return nil
						})
					}
					r, err := OpenReadOnly(root)
					if err != nil {
						t.Fatal(err)
					}
					defer r.Close()
					recs, err := r.Records("Secret Folder")
					if err != nil || len(recs) != 2*n {
						t.Fatalf("%d records, %v", len(recs), err)
					}
					if enc {
						if _, err := r.OpenMessage(recs[0]); !errors.Is(err, ErrEncrypted) {
							t.Fatalf("without identity: %v", err)
						}
						res, err := r.Check()
						if err != nil || len(res.Problems) != 0 || res.NotChecked == "" {
							t.Fatalf("light check: %+v %v", res, err)
						}
						other, _ := age.GenerateX25519Identity()
						var ie *IdentityError
						if err := r.SetIdentities([]age.Identity{other}); !errors.As(err, &ie) {
							t.Fatalf("wrong identity: %v", err)
						}
						if err := r.SetIdentities([]age.Identity{id}); err != nil {
							t.Fatal(err)
						}
						if recs, err = r.Records("Secret Folder"); err != nil {
							t.Fatal(err)
						}
						if recs[0].MessageID != "secret-mid-1@example.org" || len(recs[0].Flags) != 2 {
							t.Fatalf("unsealed record %+v", recs[0])
						}
					}
					for _, rec := range recs {
						if f == Mbox && rec.UID > n && rec.StatusLen == 0 {
							t.Fatalf("UID %d has no status lines", rec.UID)
						}
						rc, err := r.OpenMessage(rec)
						if err != nil {
							t.Fatal(err)
						}
						b, err := io.ReadAll(rc)
						rc.Close()
						if err != nil || sha256.Sum256(b) != want[rec.UID] {
							t.Fatalf("UID %d: %d bytes, %v", rec.UID, len(b), err)
						}
					}
					res, err := r.Check()
					if err != nil || len(res.Problems) != 0 || res.Messages != 2*n || res.NotChecked != "" {
						t.Fatalf("check: %+v %v", res, err)
					}
					// A flipped byte in a message file.
					p := filepath.Join(root, filepath.FromSlash(recs[3].File))
					b, _ := os.ReadFile(p)
					b[len(b)/2] ^= 1
					os.WriteFile(p, b, 0o600)
					res, err = r.Check()
					if err != nil || len(res.Problems) == 0 {
						t.Fatalf("flipped byte not seen: %+v %v", res, err)
					}
				})
			}
		}
	}
}

// The sweep of unindexed segments takes a folder's own segments only, never
// those of a folder whose name starts with the same characters.
func TestIsSegmentOf(t *testing.T) {
	a := &Archive{Header: Header{Encryption: EncryptionAge, Format: Mbox}}
	name := segmentName(a, "INBOX.mbox")
	for _, c := range []struct {
		name, rel string
		want      bool
	}{
		{name, "INBOX.mbox", true},
		{"INBOX.mbox.x.mbox." + strings.TrimPrefix(name, "INBOX.mbox."), "INBOX.mbox", false},
		{"INBOX.mbox.x.mbox." + strings.TrimPrefix(name, "INBOX.mbox."), "INBOX.mbox.x.mbox", true},
		{"INBOX.mbox", "INBOX.mbox", false},
		{"INBOX.mbox.20260101T000000Z-abcdef12.mbox.zst.age", "INBOX.mbox", true},
		{"INBOX.mbox.20260101T000000Z-abcdef12-x.mbox.age", "INBOX.mbox", false},
	} {
		if got := isSegmentOf(c.name, c.rel); got != c.want {
			t.Errorf("isSegmentOf(%q, %q) = %v", c.name, c.rel, got)
		}
	}
}

// An archive encrypted to an SSH ed25519 public key (as in
// authorized_keys) and to a recipients file reads back with the SSH
// private key, or with the age identity.
func TestSSHAndFileRecipients(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600)
	sshRcpt, err := ParseRecipient(string(ssh.MarshalAuthorizedKey(spub)))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := age.GenerateX25519Identity()
	rf := filepath.Join(dir, "recipients.txt")
	os.WriteFile(rf, []byte("# backup key\n\n"+id.Recipient().String()+"\n"), 0o600)
	fromFile, err := ReadRecipientsFile(rf)
	if err != nil || len(fromFile) != 1 {
		t.Fatalf("recipients file: %v", err)
	}
	if _, err := ParseRecipient(id.String()); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("a private key as recipient: %v", err)
	}
	root := filepath.Join(dir, "a")
	a, err := OpenSealed(root, EML, false, "", "test", Sealing{Recipients: append([]age.Recipient{sshRcpt}, fromFile...)})
	if err != nil {
		t.Fatal(err)
	}
	w, err := a.OpenFolder("INBOX", []string{"INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	raw := sealedMessage(1)
	if _, err := w.Put(&message.Meta{UIDValidity: 1, UID: 1, InternalDate: time.Unix(1700000000, 0)}, strings.NewReader(raw), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	idFile := filepath.Join(dir, "key.txt")
	os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600)
	for _, f := range []string{keyFile, idFile} {
		ids, err := ReadIdentityFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := OpenReadOnly(root)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SetIdentities(ids); err != nil {
			t.Fatal(err)
		}
		recs, err := r.Records("INBOX")
		if err != nil || len(recs) != 1 {
			t.Fatalf("%d records, %v", len(recs), err)
		}
		rc, err := r.OpenMessage(recs[0])
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		r.Close()
		if string(b) != raw {
			t.Fatalf("%s: the message did not come back", f)
		}
	}
}

// A segment renamed into place whose index lines were never written (a
// kill between the two) is removed by the next writer, and only it: the
// indexed segments, and those of a folder whose name starts the same way,
// stay.
func TestOrphanSegmentSwept(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	s := Sealing{Recipients: []age.Recipient{id.Recipient()}}
	root := filepath.Join(t.TempDir(), "a")
	a, err := OpenSealed(root, Mbox, true, "", "test", s)
	if err != nil {
		t.Fatal(err)
	}
	for _, folder := range []string{"INBOX", "INBOX.mbox.x"} {
		w, err := a.OpenFolder(folder, []string{folder})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Put(&message.Meta{UIDValidity: 1, UID: 1, InternalDate: time.Unix(1700000000, 0)}, strings.NewReader(sealedMessage(1)), nil); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	orphan := filepath.Join(root, segmentName(&Archive{Header: Header{Encryption: EncryptionAge}}, "INBOX.mbox"))
	if err := os.WriteFile(orphan, []byte("age..."), 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := filepath.Glob(filepath.Join(root, "*.age"))
	if len(before) != 3 {
		t.Fatalf("%d segments before", len(before))
	}
	a, err = OpenSealed(root, Mbox, true, "", "test", s)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	after, _ := filepath.Glob(filepath.Join(root, "*.age"))
	if len(after) != 2 {
		t.Fatalf("segments after: %v", after)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Fatal("the orphan segment is still there")
	}
	r, err := OpenReadOnly(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetIdentities([]age.Identity{id})
	res, err := r.Check()
	if err != nil || len(res.Problems) != 0 || res.Messages != 2 {
		t.Fatalf("check: %+v %v", res, err)
	}
}

// An orphan segment of a folder the archive does not know yet (a run was
// killed after writing the folder's first segment, before its first index
// line: no index, no folders.json entry) is swept when the archive is
// opened for writing (whether the folder is opened again or not); the folder's messages are then written once, and
// check finds nothing the index does not know (before, the orphan stayed
// beside the new segment: TestEncryptedKillAndResume failed one run in
// three).
func TestOrphanSegmentOfNewFolderSwept(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	s := Sealing{Recipients: []age.Recipient{id.Recipient()}}
	root := filepath.Join(t.TempDir(), "a")
	a, err := OpenSealed(root, Mbox, true, "", "test", s)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	orphan := filepath.Join(root, segmentName(&Archive{Header: Header{Encryption: EncryptionAge}}, "INBOX.mbox"))
	if err := os.WriteFile(orphan, []byte("age..."), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err = OpenSealed(root, Mbox, true, "", "test", s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Fatal("the orphan segment of a folder the archive does not know is still there after the open")
	}
	w, err := a.OpenFolder("INBOX", []string{"INBOX"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); err == nil {
		t.Fatal("the orphan segment of a new folder is still there after OpenFolder")
	}
	if _, err := w.Put(&message.Meta{UIDValidity: 1, UID: 1, InternalDate: time.Unix(1700000000, 0)}, strings.NewReader(sealedMessage(1)), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	r, err := OpenReadOnly(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.SetIdentities([]age.Identity{id})
	res, err := r.Check()
	if err != nil || len(res.Problems) != 0 || res.Messages != 1 {
		t.Fatalf("check: %+v %v", res, err)
	}
}

// An identity file others can read is refused, as a password file is; a
// passphrase-protected one gets a hint.
func TestIdentityFileRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("file modes say nothing on Windows")
	}
	id, _ := age.GenerateX25519Identity()
	p := filepath.Join(t.TempDir(), "key.txt")
	os.WriteFile(p, []byte(id.String()+"\n"), 0o600)
	os.Chmod(p, 0o644)
	var me *IdentityFileModeError
	if _, err := ReadIdentityFile(p); !errors.As(err, &me) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a readable identity file: %v", err)
	}
	os.Chmod(p, 0o600)
	if ids, err := ReadIdentityFile(p); err != nil || len(ids) != 1 {
		t.Fatalf("%d identities, %v", len(ids), err)
	}
	var enc bytes.Buffer
	w, _ := age.Encrypt(&enc, id.Recipient())
	w.Write([]byte(id.String()))
	w.Close()
	os.WriteFile(p, enc.Bytes(), 0o600)
	if _, err := ReadIdentityFile(p); err == nil || !strings.Contains(err.Error(), "age -d -o") {
		t.Fatalf("a protected identity file: %v", err)
	}
}

// The files of an encrypted archive are standard age files: the age
// command (and zstd's) opens them by hand, without mailmove. Skipped where
// age is not installed (Debian: apt-get install age).
func TestAgeCLIOpensFiles(t *testing.T) {
	agePath, err := exec.LookPath("age")
	if err != nil {
		t.Skip("age is not installed")
	}
	id, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.txt")
	os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600)
	for _, f := range []Format{EML, Mbox} {
		for _, comp := range []string{"", CompressionZstd} {
			if comp != "" {
				if _, err := exec.LookPath("zstd"); err != nil {
					continue
				}
			}
			root := filepath.Join(dir, fmt.Sprintf("%s-%s", f, comp))
			a, err := OpenSealed(root, f, false, "", "test", Sealing{Recipients: []age.Recipient{id.Recipient()}, Compress: comp})
			if err != nil {
				t.Fatal(err)
			}
			w, _ := a.OpenFolder("INBOX", []string{"INBOX"})
			raw := sealedMessage(3)
			if _, err := w.Put(&message.Meta{UIDValidity: 1, UID: 1, InternalDate: time.Unix(1700000000, 0)}, strings.NewReader(raw), nil); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			a.Close()
			files, _ := filepath.Glob(filepath.Join(root, "INBOX*", "*.age"))
			more, _ := filepath.Glob(filepath.Join(root, "INBOX*.age"))
			files = append(files, more...)
			if len(files) != 1 {
				t.Fatalf("%s: files %v", root, files)
			}
			script := `"$0" -d -i "$1" "$2"`
			if comp != "" {
				script += ` | zstd -dc`
			}
			out, err := exec.Command("sh", "-c", script, agePath, keyFile, files[0]).Output()
			if err != nil {
				t.Fatalf("%s: %v", files[0], err)
			}
			if f == EML && string(out) != raw {
				t.Fatalf("%s: age -d gives %d bytes, not the message", files[0], len(out))
			}
			if f == Mbox && (!strings.HasPrefix(string(out), "From ") || !strings.Contains(string(out), ">From here SECRETBODY 3")) {
				t.Fatalf("%s: age -d gives no mbox: %.80q", files[0], out)
			}
		}
	}
}
