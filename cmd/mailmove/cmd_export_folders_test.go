package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// One folder the archive cannot take never stops the others: names too long
// for a file name are shortened (stably, recorded in folders.json), names
// with every byte a file system dislikes are escaped, and a folder whose
// files cannot be written (a path component that is a regular file; a
// read-only file or folder, when not root) is reported, exit 3, while every
// other folder is exported. The next run is stable (nothing fetched twice,
// the same paths), and once the cause is gone the folder follows. check
// and import find the shortened files.
func TestBadFolderDoesNotStopOthers(t *testing.T) {
	long := strings.Repeat("ä", 150) // 300 bytes
	names := []string{
		"INBOX",
		long,
		long + "x", // same readable prefix: the hashes keep them apart
		"Deep/" + strings.Repeat("y", 300) + "/Sub",
		strings.Repeat("%", 120), // 360 bytes once escaped
		"..", ".", ".mailmove", "%41", `back\slash`, "CON", `a:b*c?"<>|`, " spaced ", "dot.",
		"Blocked/Sub", // OUT/Blocked will be a regular file
		"RO",          // made read-only when not root
	}
	for _, format := range []string{"mbox", "eml"} {
		t.Run(format, func(t *testing.T) {
			src := testmail.Mem(t)
			cfg := testmail.MemConfig(t, src.Addr)
			msgs := testmail.Gen(3*len(names), names, 61)
			testmail.Put(t, cfg, msgs)
			from := "imap://alice@" + src.Addr + "?tls=none"
			out := filepath.Join(t.TempDir(), "out")
			export := func(extra ...string) (string, int, exportJSON) {
				t.Helper()
				stdout, stderr, code := runCmd(t, append([]string{"export", "--from", from, "--to", format, "--out", out, "--json"}, extra...)...)
				var sum exportJSON
				if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
					t.Fatalf("--json: %v: %q (stderr %q)", err, stdout, stderr)
				}
				return stderr, code, sum
			}
			// a first run makes the archive with INBOX and RO
			if stderr, code, _ := export("--folder", "INBOX", "--folder", "RO"); code != 0 {
				t.Fatalf("first run: exit %d: %s", code, stderr)
			}
			if err := os.WriteFile(filepath.Join(out, "Blocked"), []byte("not a folder\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			more := testmail.Gen(2, []string{"RO"}, 62)
			testmail.Put(t, cfg, more)
			msgs = append(msgs, more...)
			roPath := filepath.Join(out, "RO")
			if format == "mbox" {
				roPath += ".mbox"
			}
			wantFailed := []string{"Blocked/Sub"}
			if format == "eml" {
				// the server's (empty) parent folder Blocked is the directory OUT/Blocked
				wantFailed = []string{"Blocked", "Blocked/Sub"}
			}
			if os.Geteuid() != 0 {
				os.Chmod(roPath, 0o500)
				t.Cleanup(func() { os.Chmod(roPath, 0o700) })
				wantFailed = append(wantFailed, "RO")
			} else {
				t.Log("running as root: permissions do not stop writes, the read-only case is skipped (the regular-file case stands for it)")
			}

			stderr, code, sum := export()
			if code != 3 {
				t.Fatalf("exit %d, want 3: %s", code, stderr)
			}
			var failed []string
			for _, f := range sum.Failed {
				if f.UID != 0 || !strings.Contains(f.Error, "could not be written to the archive") {
					t.Errorf("unexpected failure %+v", f)
				}
				failed = append(failed, f.Folder)
			}
			sort.Strings(failed)
			if strings.Join(failed, ",") != strings.Join(wantFailed, ",") {
				t.Fatalf("failed folders %v, want %v", failed, wantFailed)
			}
			if !strings.Contains(stderr, "folder Blocked/Sub:") {
				t.Fatalf("the failed folder is not named on stderr: %q", stderr)
			}
			skip := map[string]bool{}
			for _, f := range wantFailed {
				skip[f] = true
			}
			checkArchiveHolds(t, out, msgs, skip)

			// again, the cause still there: the same failure, nothing else fetched
			before := readFile(t, filepath.Join(out, ".mailmove", "folders.json"))
			stderr, code, sum = export()
			if code != 3 || sum.Messages != 0 || len(sum.Failed) != len(wantFailed) {
				t.Fatalf("second run: exit %d, %d messages, failures %+v: %s", code, sum.Messages, sum.Failed, stderr)
			}
			if after := readFile(t, filepath.Join(out, ".mailmove", "folders.json")); !samePaths(t, before, after) {
				t.Fatal("folder paths changed between runs")
			}

			// the cause removed: the folders follow, and nothing is duplicated
			os.Remove(filepath.Join(out, "Blocked"))
			os.Chmod(roPath, 0o700)
			if stderr, code, _ := export(); code != 0 {
				t.Fatalf("after the fix: exit %d: %s", code, stderr)
			}
			checkArchiveHolds(t, out, msgs, nil)
			if stdout, stderr, code := runCmd(t, "check", out); code != 0 {
				t.Fatalf("check: exit %d: %s %s", code, stdout, stderr)
			}
			// every name in the archive fits a file system, the long ones shortened
			shortened := 0
			filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
				if len(fi.Name()) > archive.MaxName {
					t.Errorf("%s: name of %d bytes", p, len(fi.Name()))
				}
				if strings.Contains(fi.Name(), "%~") {
					shortened++
				}
				return nil
			})
			if shortened < 4 {
				t.Errorf("%d shortened names, want at least 4 (three long folders and their index files)", shortened)
			}
			// import finds the shortened files, and gives the full names back
			dst := testmail.Mem(t)
			if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--to", "imap://alice@"+dst.Addr+"?tls=none", out); code != 0 {
				t.Fatalf("import: exit %d: %s", code, e)
			}
			held := map[string]bool{}
			for f, ms := range testmail.Held(t, testmail.MemConfig(t, dst.Addr)) {
				for _, m := range ms {
					held[f+"\x00"+string(m.Raw)] = true
				}
			}
			for _, m := range msgs {
				if !held[m.Folder+"\x00"+string(m.Raw)] {
					t.Fatalf("a message of %q did not come back from the archive into its folder", m.Folder)
				}
			}
		})
	}
}

type exportJSON struct {
	Messages int `json:"messages"`
	Failed   []struct {
		Folder string `json:"folder"`
		UID    uint32 `json:"uid"`
		Error  string `json:"error"`
	} `json:"failed"`
}

// checkArchiveHolds checks that every folder of msgs but those in skip is in
// the archive, each message once, byte for byte.
func checkArchiveHolds(t *testing.T, out string, msgs []testmail.Msg, skip map[string]bool) {
	t.Helper()
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	want := map[string][]string{}
	for _, m := range msgs {
		if !skip[m.Folder] {
			s := sha256.Sum256(m.Raw)
			want[m.Folder] = append(want[m.Folder], hex.EncodeToString(s[:]))
		}
	}
	for folder, w := range want {
		recs, err := a.Records(folder)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			rc, err := a.OpenMessage(r)
			if err != nil {
				t.Fatalf("%q: %v", folder, err)
			}
			h := sha256.New()
			b := make([]byte, 32<<10)
			for {
				n, err := rc.Read(b)
				h.Write(b[:n])
				if err != nil {
					break
				}
			}
			rc.Close()
			got = append(got, hex.EncodeToString(h.Sum(nil)))
		}
		sort.Strings(got)
		sort.Strings(w)
		if strings.Join(got, ",") != strings.Join(w, ",") {
			t.Fatalf("folder %q: %d messages archived, want %d (or different bytes)", folder, len(got), len(w))
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// samePaths reports whether every folder of a keeps its path in b.
func samePaths(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y struct {
		Folders map[string]struct {
			Path string `json:"path"`
		} `json:"folders"`
	}
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	for f, s := range x.Folders {
		if s.Path != "" && y.Folders[f].Path != s.Path {
			t.Logf("%q: %q then %q", f, s.Path, y.Folders[f].Path)
			return false
		}
	}
	return true
}

// kill -9 at random points of an .eml export leaves no litter: after a
// complete run the archive holds the indexed messages and .mailmove/,
// nothing else (temporary files live in .mailmove/tmp, emptied by every
// run), and check passes; a file planted among the messages is reported.
func TestKillLeavesNoLitter(t *testing.T) {
	srv := seedServer(t, 600)
	from := "imap://alice@" + slowProxy(t, srv.Addr) + "?tls=none"
	env := []string{"MAILMOVE_FROM_PASSWORD=secret"}
	for _, seed := range []int64{2, 3, 4} {
		out := filepath.Join(t.TempDir(), "killed")
		args := []string{"export", "--from", from, "--to", "eml", "--out", out, "--connections", "2"}
		kills := killRuns(t, 5, seed, env, args...)
		left, _ := filepath.Glob(filepath.Join(out, ".mailmove", "tmp", ".mm-tmp-*"))
		if _, e, code := runCmd(t, args...); code != 0 {
			t.Fatalf("seed %d: final run: exit %d: %s", seed, code, e)
		}
		if stdout, e, code := runCmd(t, "check", out); code != 0 {
			t.Fatalf("seed %d, %d kills: check: exit %d: %s %s", seed, kills, code, stdout, e)
		}
		a, err := archive.OpenReadOnly(out)
		if err != nil {
			t.Fatal(err)
		}
		indexed, n := map[string]bool{}, 0
		for _, f := range a.Folders() {
			recs, err := a.Records(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				indexed[r.File] = true
				n++
			}
		}
		a.Close()
		if n != 600 {
			t.Fatalf("seed %d: %d messages indexed, want 600", seed, n)
		}
		filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
			rel, _ := filepath.Rel(out, p)
			rel = filepath.ToSlash(rel)
			switch {
			case fi.IsDir():
			case strings.HasPrefix(rel, ".mailmove/tmp/"):
				t.Errorf("seed %d: temporary file left after a complete run: %s", seed, rel)
			case strings.HasPrefix(rel, ".mailmove/"):
			case !indexed[rel]:
				t.Errorf("seed %d: %s is neither a message nor .mailmove's", seed, rel)
			}
			return nil
		})
		t.Logf("seed %d: %d kills, %d temporary files left by the last one", seed, kills, len(left))
		if seed == 2 {
			for _, stray := range []string{"INBOX/.mm-tmp-0123456789abcdef", "Sent/notes.txt"} {
				if err := os.WriteFile(filepath.Join(out, filepath.FromSlash(stray)), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, e, code := runCmd(t, "check", out)
			if code != 3 || !strings.Contains(e, "INBOX/.mm-tmp-0123456789abcdef: a file the index does not know") || !strings.Contains(e, "Sent/notes.txt: a file the index does not know") {
				t.Fatalf("planted files: check exit %d: %s", code, e)
			}
			// an export removes the old-style temporary file, never the user's
			if _, e, code := runCmd(t, args...); code != 0 {
				t.Fatalf("run after planting: exit %d: %s", code, e)
			}
			if _, err := os.Stat(filepath.Join(out, "INBOX", ".mm-tmp-0123456789abcdef")); err == nil {
				t.Error("an old-style temporary file survived a run")
			}
			if _, err := os.Stat(filepath.Join(out, "Sent", "notes.txt")); err != nil {
				t.Errorf("the user's file was removed: %v", err)
			}
		}
	}
}
