package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// newIdentity writes a new age identity file and returns its path and its
// recipient.
func newIdentity(t *testing.T) (file, recipient string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "key.txt")
	if err := os.WriteFile(file, []byte("# test identity\n"+id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, id.Recipient().String()
}

// heldSums describes what an account holds: per folder, the sorted
// SHA-256 of each message's BODY[] with its flags and INTERNALDATE.
func heldSums(t *testing.T, cfg *account.Config) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for f, msgs := range testmail.Held(t, cfg) {
		for _, m := range msgs {
			sum := sha256.Sum256(m.Raw)
			var flags []string
			for _, x := range m.Flags {
				flags = append(flags, strings.ToLower(string(x)))
			}
			sort.Strings(flags)
			out[f] = append(out[f], hex.EncodeToString(sum[:])+" "+strings.Join(flags, ",")+" "+m.Date.UTC().Format(time.RFC3339))
		}
		sort.Strings(out[f])
	}
	return out
}

// sameSums fails unless got holds exactly want, folder by folder.
func sameSums(t *testing.T, want, got map[string][]string) {
	t.Helper()
	for f, w := range want {
		if strings.Join(got[f], "\n") != strings.Join(w, "\n") {
			t.Fatalf("folder %s: %d messages came back, want %d (or different ones)", f, len(got[f]), len(w))
		}
	}
	for f := range got {
		if _, ok := want[f]; !ok && len(got[f]) > 0 {
			t.Fatalf("folder %s came back, and is not in the source", f)
		}
	}
}

// noneOf fails if any file under root holds one of the markers.
func noneOf(t *testing.T, root string, markers ...string) {
	t.Helper()
	files := 0
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markers {
			if strings.Contains(string(b), m) {
				t.Errorf("%s holds %q in clear", p, m)
			}
		}
		return nil
	})
	if files < 3 {
		t.Fatalf("only %d files in %s", files, root)
	}
}

// archiveSums lists, per folder, "UID SHA-256" of every message an
// encrypted archive's index records, read with the identity, after a full
// check with no problem.
func archiveSums(t *testing.T, root, identity string) map[string][]string {
	t.Helper()
	a, err := archive.OpenReadOnly(root)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ids, err := archive.ReadIdentityFile(identity)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetIdentities(ids); err != nil {
		t.Fatal(err)
	}
	res, err := a.Check()
	if err != nil || len(res.Problems) > 0 || res.NotChecked != "" {
		t.Fatalf("check: %+v %v", res, err)
	}
	out := map[string][]string{}
	for _, f := range a.Folders() {
		recs, err := a.Records(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out[f] = append(out[f], fmt.Sprintf("%d %s", r.UID, r.SHA256))
		}
		sort.Strings(out[f])
	}
	return out
}

// An encrypted export from Dovecot holds no marker of a message (body,
// subject, address) in any file; check without the identity checks what it
// can and says what not, with it the whole; import without it says what to
// pass (exit 2), with it gives every message back exactly (SHA-256 of
// BODY[], flags, INTERNALDATE); mixing plain and encrypted is refused; a
// re-run adds only the new messages; a flipped byte is found.
func TestEncryptedArchiveDovecot(t *testing.T) {
	for _, format := range []string{"mbox", "eml"} {
		t.Run(format, func(t *testing.T) {
			d := testmail.StartDovecot(t)
			src := d.Config(t, "imaps", "src")
			msgs := testmail.Corpus()
			marker := testmail.Msg{Folder: "INBOX", Date: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), Flags: []imap.Flag{imap.FlagSeen, "SecretKeyword"},
				Raw: []byte("From: Marker Person <marker.person@hidden-domain.example>\r\nSubject: SUBJECTMARKER-9f3a\r\nMessage-ID: <mid-marker-51@hidden-domain.example>\r\n\r\nBODYMARKER-77ce is in the body\r\n")}
			msgs = append(msgs, marker)
			testmail.Put(t, src, msgs)
			idFile, rcpt := newIdentity(t)
			ca := filepath.Join(d.Dir, "cert.pem")
			arch := filepath.Join(t.TempDir(), "enc")
			env := []string{"MAILMOVE_FROM_PASSWORD=pw", "MAILMOVE_TO_PASSWORD=pw"}
			exp := []string{"export", "--from", "imaps://src@" + d.TLSAddr, "--from-ca-file", ca, "--to", format, "--out", arch}
			if _, e, code := runCmdEnv(t, env, append(exp, "--encrypt-to", rcpt)...); code != 0 {
				t.Fatalf("export: %d %s", code, e)
			}
			noneOf(t, arch, "BODYMARKER-77ce", "SUBJECTMARKER-9f3a", "marker.person", "hidden-domain", "mid-marker-51", "SecretKeyword", "From the start of a body line")

			// check without the identity: what it can, and it says what not
			if o, e, code := runCmd(t, "check", arch); code != 0 || !strings.Contains(e, "--identity") || !strings.Contains(o, "0 problems") {
				t.Fatalf("check without identity: %d %s %s", code, o, e)
			}
			var light struct {
				OK         bool   `json:"ok"`
				Messages   int    `json:"messages"`
				NotChecked string `json:"not_checked"`
			}
			if o, e, code := runCmd(t, "check", "--json", arch); code != 0 || json.Unmarshal([]byte(o), &light) != nil || !light.OK || light.Messages != len(msgs) || !strings.Contains(light.NotChecked, "--identity") {
				t.Fatalf("check --json without identity: %d %+v %s %s", code, light, o, e)
			}
			if o, e, code := runCmd(t, "check", "--identity", idFile, arch); code != 0 || strings.Contains(e, "not checked") {
				t.Fatalf("check --identity: %d %s %s", code, o, e)
			}
			// mixing is refused, with what to do
			if _, e, code := runCmdEnv(t, env, exp...); code != 2 || !strings.Contains(e, "encrypted archive") || !strings.Contains(e, "--encrypt-to") {
				t.Fatalf("plain export into an encrypted archive: %d %s", code, e)
			}
			plain := filepath.Join(t.TempDir(), "plain")
			if _, e, code := runCmdEnv(t, env, "export", "--from", "imaps://src@"+d.TLSAddr, "--from-ca-file", ca, "--to", format, "--out", plain, "--folder", "Sent"); code != 0 {
				t.Fatalf("plain export: %d %s", code, e)
			}
			if _, e, code := runCmdEnv(t, env, "export", "--from", "imaps://src@"+d.TLSAddr, "--from-ca-file", ca, "--to", format, "--out", plain, "--encrypt-to", rcpt); code != 2 || !strings.Contains(e, "plain") {
				t.Fatalf("encrypted export into a plain archive: %d %s", code, e)
			}

			// import without the identity: the error says what to pass
			imp := []string{"import", "--to", "imaps://dst@" + d.TLSAddr, "--to-ca-file", ca, "--journal-dir", t.TempDir()}
			if _, e, code := runCmdEnv(t, env, append(imp, arch)...); code != 2 || !strings.Contains(e, "encrypted archive") || !strings.Contains(e, "--identity FILE") {
				t.Fatalf("import without identity: %d %s", code, e)
			}
			if held := testmail.Held(t, d.Config(t, "imaps", "dst")); len(held) != 0 {
				t.Fatalf("import without identity stored %d folders", len(held))
			}
			// a wrong identity: said so
			wrong, _ := newIdentity(t)
			if _, e, code := runCmdEnv(t, env, append(imp, "--identity", wrong, arch)...); code != 2 || !strings.Contains(e, "does not open") {
				t.Fatalf("import with another identity: %d %s", code, e)
			}
			if o, e, code := runCmdEnv(t, env, append(imp, "--identity", idFile, arch)...); code != 0 {
				t.Fatalf("import --identity: %d %s %s", code, o, e)
			}
			sameSums(t, heldSums(t, src), heldSums(t, d.Config(t, "imaps", "dst")))

			// incremental: only the new messages
			before := archiveSums(t, arch, idFile)
			n0 := 0
			for _, s := range before {
				n0 += len(s)
			}
			testmail.Put(t, src, testmail.Gen(3, []string{"INBOX", "Sent"}, 99))
			if _, e, code := runCmdEnv(t, env, append(exp, "--encrypt-to", rcpt)...); code != 0 {
				t.Fatalf("second export: %d %s", code, e)
			}
			after := archiveSums(t, arch, idFile)
			n1 := 0
			for f, s := range after {
				n1 += len(s)
				if !strings.HasPrefix(strings.Join(s, "\n"), strings.Join(before[f], "\n")) && len(before[f]) > 0 {
					// sorted by UID string: the old ones must all still be there
					have := map[string]bool{}
					for _, x := range s {
						have[x] = true
					}
					for _, x := range before[f] {
						if !have[x] {
							t.Fatalf("folder %s lost %s", f, x)
						}
					}
				}
			}
			if n1 != n0+3 {
				t.Fatalf("second run: %d messages, want %d", n1, n0+3)
			}

			// a flipped byte in an encrypted message file
			var victim string
			filepath.Walk(arch, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && strings.HasSuffix(p, ".age") && !strings.Contains(p, archive.StateDir) && fi.Size() > 1000 {
					victim = p
				}
				return nil
			})
			if victim == "" {
				t.Fatal("no .age file")
			}
			b, _ := os.ReadFile(victim)
			b[len(b)/2] ^= 0x20
			os.WriteFile(victim, b, 0o600)
			if o, e, code := runCmd(t, "check", "--identity", idFile, arch); code != 3 || !strings.Contains(e, "damaged") {
				t.Fatalf("check after a flipped byte: %d %s %s", code, o, e)
			}
		})
	}
}

// A compressed (zstd) archive, plain and encrypted, gives every message
// back byte for byte through import, and checks clean.
func TestCompressedArchive(t *testing.T) {
	src := testmail.Mem(t)
	msgs := testmail.Gen(60, []string{"INBOX", "Sent"}, 23)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), msgs)
	idFile, rcpt := newIdentity(t)
	for _, format := range []string{"mbox", "eml"} {
		for _, enc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s-encrypted=%v", format, enc), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "z")
				noComp := []string{"export", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", format, "--out", out}
				var idArgs []string
				if enc {
					noComp = append(noComp, "--encrypt-to", rcpt)
					idArgs = []string{"--identity", idFile}
				}
				args := append(append([]string{}, noComp...), "--compress", "zstd")
				if _, e, code := runCmd(t, args...); code != 0 {
					t.Fatalf("export: %d %s", code, e)
				}
				if !enc {
					noneOf(t, out, "From the start of a body line")
				}
				// mixing compressed and not is refused
				if _, e, code := runCmd(t, noComp...); code != 2 || !strings.Contains(e, "compress") {
					t.Fatalf("export without --compress into a compressed archive: %d %s", code, e)
				}
				if o, e, code := runCmd(t, append(append([]string{"check"}, idArgs...), out)...); code != 0 {
					t.Fatalf("check: %d %s %s", code, o, e)
				}
				dst := testmail.Mem(t)
				if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, append(append([]string{"import", "--to", "imap://alice@" + dst.Addr + "?tls=none", "--journal-dir", t.TempDir()}, idArgs...), out)...); code != 0 {
					t.Fatal(e)
				}
				sameSums(t, heldSums(t, testmail.MemConfig(t, src.Addr)), heldSums(t, testmail.MemConfig(t, dst.Addr)))
			})
		}
	}
}

// kill -9 in the middle of encrypted exports, then a run to the end: the
// archive holds exactly what one clean encrypted export holds, and checks
// clean with the identity (no segment or file the index does not know).
func TestEncryptedKillAndResume(t *testing.T) {
	srv := seedServer(t, 1500)
	from := "imap://alice@" + slowProxy(t, srv.Addr) + "?tls=none"
	idFile, rcpt := newIdentity(t)
	for _, format := range []string{"mbox", "eml"} {
		t.Run(format, func(t *testing.T) {
			clean := filepath.Join(t.TempDir(), "clean")
			args := func(out string) []string {
				return []string{"export", "--from", from, "--to", format, "--out", out, "--encrypt-to", rcpt, "--compress", "zstd", "--connections", "2"}
			}
			if _, e, code := runCmd(t, args(clean)...); code != 0 {
				t.Fatalf("clean run: exit %d: %s", code, e)
			}
			want := archiveSums(t, clean, idFile)
			out := filepath.Join(t.TempDir(), "killed")
			kills := killRuns(t, 12, 5, []string{"MAILMOVE_FROM_PASSWORD=secret"}, args(out)...)
			if _, e, code := runCmd(t, args(out)...); code != 0 {
				t.Fatalf("final run: exit %d: %s", code, e)
			}
			got := archiveSums(t, out, idFile)
			if len(got) != len(want) {
				t.Fatalf("folders: got %d, want %d", len(got), len(want))
			}
			for f, w := range want {
				if strings.Join(got[f], ",") != strings.Join(w, ",") {
					t.Fatalf("folder %s after %d kills: %d messages, want %d (or different ones)", f, kills, len(got[f]), len(w))
				}
			}
			t.Logf("%d kills", kills)
		})
	}
}

// A 50 MiB message through an encrypted, compressed export and back
// through import --identity: each process's peak RSS stays far below the
// message's size (it is streamed, never held).
func TestEncryptedMemoryFlat(t *testing.T) {
	src := testmail.Mem(t)
	var b strings.Builder
	b.WriteString("From: big@example.org\r\nSubject: big\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 2) + "\r\n"
	for i := 0; b.Len() < 50<<20; i++ {
		fmt.Fprintf(&b, "%08x", i*2654435761)
		b.WriteString(line)
	}
	raw := b.String()
	testmail.Put(t, testmail.MemConfig(t, src.Addr), []testmail.Msg{{Folder: "INBOX", Raw: []byte(raw), Date: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}})
	idFile, rcpt := newIdentity(t)
	peak := func(what string, args ...string) {
		t.Helper()
		cmd := exec.Command(binary(t), args...)
		cmd.Env = append(os.Environ(), "MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret", "MAILMOVE_DEBUG_PEAK_RSS=1")
		res, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", what, err, res)
		}
		var maxRSS int64
		parts := strings.SplitN(string(res), "VmHWM:", 2)
		if _, err := fmt.Sscanf(strings.TrimSpace(parts[len(parts)-1]), "%d kB", &maxRSS); err != nil {
			t.Fatalf("no peak RSS in %q", res)
		}
		t.Logf("%s: peak RSS %d MiB for a 50 MiB message", what, maxRSS/1024)
		if maxRSS > 40<<10 {
			t.Errorf("%s: peak RSS %d MiB: the message was held in memory", what, maxRSS/1024)
		}
	}
	for _, format := range []string{"mbox", "eml"} {
		out := filepath.Join(t.TempDir(), "a")
		peak("export "+format, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", format, "--out", out, "--encrypt-to", rcpt, "--compress", "zstd")
		dst := testmail.Mem(t)
		peak("import "+format, "import", "--to", "imap://alice@"+dst.Addr+"?tls=none", "--journal-dir", t.TempDir(), "--identity", idFile, out)
		held := testmail.Held(t, testmail.MemConfig(t, dst.Addr))
		if len(held["INBOX"]) != 1 || string(held["INBOX"][0].Raw) != raw {
			t.Fatalf("%s: the message did not come back byte for byte", format)
		}
	}
}
