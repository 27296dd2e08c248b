package imports

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// oddMessages are real messages that look wrong: each must arrive byte for
// byte (after CRLF), since the server takes them.
func oddMessages() []testmail.Msg {
	date := time.Date(2025, 1, 6, 8, 15, 0, 0, time.UTC)
	raw := []string{
		// a leading From line (a postmark someone left in the message)
		"From someone@example.org Mon Jan  6 08:15:00 2025\r\nFrom: a@example.org\r\nSubject: odd 1 postmark\r\nMessage-ID: <odd1@example.org>\r\n\r\nbody\r\n",
		// a leading >From line
		">From someone@example.org Mon Jan  6 08:15:00 2025\r\nFrom: a@example.org\r\nSubject: odd 2 quoted\r\nMessage-ID: <odd2@example.org>\r\n\r\nbody\r\n",
		// no header at all: a digest body
		"odd 3: a digest body, no header at all\r\nsecond line\r\n\r\nFrom the body\r\n",
		// headers only, no empty line, no body
		"From: a@example.org\r\nSubject: odd 4 headers only\r\nMessage-ID: <odd4@example.org>\r\n",
		// LF only
		"From: a@example.org\nSubject: odd 5 LF only\nMessage-ID: <odd5@example.org>\n\nfirst\nFrom the body\n",
		// 8-bit header and body
		"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nSubject: odd 6 Grüße\r\nMessage-ID: <odd6@example.org>\r\n\r\nÄÖÜ äöü ß\r\n",
		// no final newline
		"From: a@example.org\r\nSubject: odd 7 no final newline\r\nMessage-ID: <odd7@example.org>\r\n\r\nno newline at the end",
		// a folded Message-ID
		"From: a@example.org\r\nSubject: odd 8 folded id\r\nMessage-ID:\r\n <odd8@example.org>\r\n\r\nbody\r\n",
	}
	var out []testmail.Msg
	for i, r := range raw {
		out = append(out, testmail.Msg{Folder: "Odd", Raw: []byte(r), Flags: []imap.Flag{imap.FlagSeen}, Date: date.Add(time.Duration(i) * time.Minute)})
	}
	return out
}

// sameBytes checks that a folder holds exactly the messages want, byte for
// byte after CRLF normalisation (noFinal: a message without a final
// newline may have got one, as in an mbox).
func sameBytes(t *testing.T, what string, got []stored, want []testmail.Msg, noFinal bool) {
	t.Helper()
	norm := func(b []byte) string {
		b = crlf(b)
		if noFinal && !bytes.HasSuffix(b, []byte("\r\n")) {
			b = append(b, '\r', '\n')
		}
		return string(b)
	}
	have := map[string]int{}
	for _, m := range got {
		have[norm(m.raw)]++
	}
	for _, m := range want {
		k := norm(m.Raw)
		if have[k] == 0 {
			t.Errorf("%s: missing or changed: %q", what, m.Raw)
			continue
		}
		have[k]--
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d messages, want %d", what, len(got), len(want))
	}
}

// checkTally checks a summary's tally against the numbers expected.
func checkTally(t *testing.T, sum *Summary, seen, appended, already, refused int) {
	t.Helper()
	if sum.Seen != seen || sum.Appended != appended || sum.Skipped != already || sum.Refused != refused || sum.NotDone != 0 {
		t.Fatalf("tally %q, want %d seen = %d appended + %d already there + %d refused; failures %v", sum.Tally(), seen, appended, already, refused, sum.Failed)
	}
	n := 0
	for _, p := range sum.Plan {
		n += p.Messages
		if p.Messages != p.Appended+p.Present+p.Journal+p.Refused {
			t.Fatalf("folder %s: tally %+v does not add up", p.Folder, p)
		}
	}
	if n != seen {
		t.Fatalf("folders hold %d messages in their tallies, want %d", n, seen)
	}
}

// Odd messages through Dovecot -> mailmove archive (both formats) ->
// Dovecot, and as foreign .eml and mbox files.
func TestOddMessagesDovecot(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	odd := oddMessages()
	testmail.Put(t, src, odd)
	served := contents(t, src)["Odd"]
	if len(served) != len(odd) {
		t.Fatalf("Dovecot holds %d of the %d odd messages", len(served), len(odd))
	}
	sameBytes(t, "Dovecot itself", served, odd, false)
	dst := d.Config(t, "imaps", "dst")
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			clearAccount(t, dst)
			out := exportTo(t, src, f)
			sum := runImport(t, Options{Account: dst, Source: out})
			checkTally(t, sum, len(odd), len(odd), 0, 0)
			sameBytes(t, "archive -> Dovecot", contents(t, dst)["Odd"], odd, false)
			// the same archive again: all there
			sum = runImport(t, Options{Account: dst, Source: out, JournalDir: t.TempDir()})
			checkTally(t, sum, len(odd), 0, len(odd), 0)
		})
	}
	// foreign .eml files: nothing stripped, not even a leading From line
	t.Run("eml", func(t *testing.T) {
		clearAccount(t, dst)
		dir := t.TempDir()
		for i, m := range odd {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.eml", i)), m.Raw, 0o600)
		}
		sum := runImport(t, Options{Account: dst, Source: dir, Folder: "Odd"})
		checkTally(t, sum, len(odd), len(odd), 0, 0)
		sameBytes(t, ".eml -> Dovecot", contents(t, dst)["Odd"], odd, false)
	})
	// a foreign mboxrd: the From_ line is the postmark, and only it is stripped
	t.Run("mbox", func(t *testing.T) {
		clearAccount(t, dst)
		var b bytes.Buffer
		for _, m := range odd {
			b.WriteString("From x@example.org Mon Jan  6 08:15:00 2025\n")
			body := strings.ReplaceAll(string(m.Raw), "\r\n", "\n")
			for _, l := range strings.SplitAfter(body, "\n") {
				if strings.HasPrefix(strings.TrimLeft(l, ">"), "From ") {
					b.WriteString(">")
				}
				b.WriteString(l)
			}
			if !strings.HasSuffix(body, "\n") {
				b.WriteString("\n")
			}
			b.WriteString("\n")
		}
		p := filepath.Join(t.TempDir(), "odd.mbox")
		os.WriteFile(p, b.Bytes(), 0o600)
		sum := runImport(t, Options{Account: dst, Source: p, Folder: "Odd"})
		checkTally(t, sum, len(odd), len(odd), 0, 0)
		sameBytes(t, "mbox -> Dovecot", contents(t, dst)["Odd"], odd, true)
	})
}

// A folder the server refuses is reported with its messages; every other
// folder is imported.
func TestFolderRefusedDovecot(t *testing.T) {
	d := testmail.StartDovecot(t)
	dst := d.Config(t, "imaps", "dst")
	dir := t.TempDir()
	msg := func(folder string, i int) {
		os.MkdirAll(filepath.Join(dir, folder), 0o700)
		raw := fmt.Sprintf("From: a@example.org\r\nSubject: %s %d\r\nMessage-ID: <%s.%d@example.org>\r\n\r\nbody\r\n", folder, i, folder, i)
		os.WriteFile(filepath.Join(dir, folder, fmt.Sprintf("%d.eml", i)), []byte(raw), 0o600)
	}
	for i := 0; i < 3; i++ {
		msg("Good", i)
		msg("Bad.Name", i) // Dovecot's Maildir++ refuses a '.' with separator '/'
		msg("Also Good", i)
	}
	sum, err := Run(context.Background(), Options{Account: dst, Source: dir, JournalDir: t.TempDir(), Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	checkTally(t, sum, 9, 6, 0, 3)
	if len(sum.Failed) != 1 || sum.Failed[0].Kind != KindFolder || sum.Failed[0].Folder != "Bad.Name" || sum.Failed[0].Messages != 3 ||
		!strings.Contains(sum.Failed[0].Error, "Bad.Name") {
		t.Fatalf("failures %+v", sum.Failed)
	}
	got := contents(t, dst)
	if len(got["Good"]) != 3 || len(got["Also Good"]) != 3 {
		t.Fatalf("target holds %v", keys(got))
	}
	for _, p := range sum.Plan {
		if p.Folder == "Bad.Name" && p.Refused != 3 {
			t.Fatalf("Bad.Name tally %+v", p)
		}
	}
	// the tally as JSON, as --json prints it
	b, _ := json.Marshal(sum)
	var v struct {
		Seen     int `json:"seen"`
		Appended int `json:"appended"`
		Refused  int `json:"refused"`
		Folders  []struct {
			Folder   string `json:"folder"`
			Messages int    `json:"messages"`
			Refused  int    `json:"refused"`
		} `json:"folders"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Seen != 9 || v.Appended != 6 || v.Refused != 3 || len(v.Folders) != 3 {
		t.Fatalf("JSON %s", b)
	}
}

// An archive from someone else is input, not code: index entries that
// point outside the archive, symlinks, a FIFO and changed files are each
// refused and listed; nothing outside the archive reaches the server; the
// rest is imported.
func TestHostileArchive(t *testing.T) {
	srv := testmail.Mem(t)
	src := testmail.MemConfig(t, srv.Addr)
	testmail.Put(t, src, testmail.Gen(6, []string{"INBOX"}, 3))
	for _, f := range []archive.Format{archive.EML, archive.Mbox} {
		t.Run(string(f), func(t *testing.T) {
			out := exportTo(t, src, f)
			secret := "Subject: SECRET outside the archive\r\n\r\nnever upload me\r\n"
			outside := filepath.Join(filepath.Dir(out), "outside.eml")
			os.WriteFile(outside, []byte(secret), 0o600)
			idx, _ := filepath.Glob(filepath.Join(out, archive.StateDir, "index", "*.jsonl"))
			if len(idx) != 1 {
				t.Fatalf("index files %v", idx)
			}
			lines := strings.Split(strings.TrimSpace(readFile(t, idx[0])), "\n")
			var recs []map[string]any
			for _, l := range lines {
				var r map[string]any
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatal(err)
				}
				recs = append(recs, r)
			}
			// damage one stored message, keeping its size
			first := recs[0]["file"].(string)
			b := []byte(readFile(t, filepath.Join(out, first)))
			o, _ := recs[0]["offset"].(float64)
			off := int(o)
			i := off + bytes.Index(b[off:], []byte("Subject: message")) + len("Subject: ")
			b[i] = 'M'
			os.WriteFile(filepath.Join(out, first), b, 0o600)

			add := func(file string, uid int) {
				r := map[string]any{}
				for k, v := range recs[1] {
					r[k] = v
				}
				r["file"], r["uid"] = file, uid
				delete(r, "offset")
				delete(r, "length")
				l, _ := json.Marshal(r)
				fh, _ := os.OpenFile(idx[0], os.O_APPEND|os.O_WRONLY, 0)
				fh.Write(append(l, '\n'))
				fh.Close()
			}
			add("../outside.eml", 101)
			add(outside, 102)
			add(".mailmove/archive.json", 103)
			add("INBOX/../../outside.eml", 104)
			os.Symlink(outside, filepath.Join(out, "link-out.eml"))
			add("link-out.eml", 105)
			if f == archive.EML {
				// a symlink to a message of the archive itself: refused too
				os.Symlink(filepath.Join(out, recs[1]["file"].(string)), filepath.Join(out, "link-in.eml"))
				add("link-in.eml", 106)
			}
			if err := syscall.Mkfifo(filepath.Join(out, "fifo.eml"), 0o600); err != nil {
				t.Fatal(err)
			}
			add("fifo.eml", 107)
			os.Mkdir(filepath.Join(out, "dir.eml"), 0o700)
			add("dir.eml", 108)

			dst := testmail.Mem(t)
			cfg := testmail.MemConfig(t, dst.Addr)
			done := make(chan *Summary, 1)
			go func() {
				sum, err := Run(context.Background(), Options{Account: cfg, Source: out, JournalDir: t.TempDir(), Log: t.Logf})
				if err != nil {
					t.Error(err)
				}
				done <- sum
			}()
			var sum *Summary
			select {
			case sum = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("the import hangs (a FIFO opened?)")
			}
			if sum == nil {
				return
			}
			for _, ms := range contents(t, cfg) {
				for _, m := range ms {
					if bytes.Contains(m.raw, []byte("SECRET")) {
						t.Fatalf("a file outside the archive was uploaded: %q", m.raw)
					}
					if bytes.Contains(m.raw, []byte("Subject: Message")) {
						t.Fatalf("the damaged message was uploaded")
					}
				}
			}
			reasons := map[string]string{}
			for _, fl := range sum.Failed {
				file, _, _ := strings.Cut(fl.Source, " at byte")
				reasons[file] = fl.Kind + ": " + fl.Error
			}
			want := map[string]string{
				"../outside.eml": "outside the archive", outside: "absolute path", ".mailmove/archive.json": "state folder",
				"INBOX/../../outside.eml": "outside the archive", "link-out.eml": "symbolic link", "fifo.eml": "not a regular file",
				"dir.eml": "not a regular file", first: "SHA-256",
			}
			if f == archive.EML {
				want["link-in.eml"] = "symbolic link"
			}
			for file, w := range want {
				if !strings.Contains(reasons[file], w) {
					t.Errorf("%s: reported as %q, want %q", file, reasons[file], w)
				}
			}
			if len(sum.Failed) != len(want) {
				t.Errorf("%d reported, want %d: %v", len(sum.Failed), len(want), sum.Failed)
			}
			// four index entries pointing outside are input refused before they
			// are messages; the others are messages refused
			refused := len(want) - 4
			checkTally(t, sum, 6+refused-1, 5, 0, refused)
		})
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The journal knows a source by what it is, not by the path as typed; the
// server-side check finds a Message-ID after a 1.2 MB header line.
func TestSameSourceTwoSpellings(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "in"), 0o700)
	long := "X-Long: " + strings.Repeat("x", 1200<<10) + "\n"
	mb := "From a@example.org Mon Jan  6 08:15:00 2025\nFrom: a@example.org\nSubject: one\nMessage-ID: <one@example.org>\n\nbody\n\n" +
		"From a@example.org Mon Jan  6 08:16:00 2025\nFrom: a@example.org\n" + long + "Subject: long header\nMessage-ID:\n <long@example.org>\n\nbody\n\n" +
		"From a@example.org Mon Jan  6 08:17:00 2025\nFrom: a@example.org\nSubject: no id\n\nbody\n"
	os.WriteFile(filepath.Join(dir, "in", "odd"), []byte(mb), 0o600)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	d := testmail.StartDovecot(t)
	for _, target := range []string{"memory", "dovecot"} {
		t.Run(target, func(t *testing.T) {
			cfg := d.Config(t, "imaps", "dst")
			if target == "memory" {
				cfg = testmail.MemConfig(t, testmail.Mem(t).Addr)
			} else {
				clearAccount(t, cfg)
			}
			jdir := t.TempDir()
			sum := runImport(t, Options{Account: cfg, Source: "in/odd", Folder: "Odd", JournalDir: jdir})
			checkTally(t, sum, 3, 3, 0, 0)
			if sum.Source != filepath.Join(dir, "in", "odd") {
				// t.TempDir may itself be under a symlink: compare resolved
				if r, _ := filepath.EvalSymlinks(filepath.Join(dir, "in", "odd")); sum.Source != r {
					t.Errorf("source resolved to %s", sum.Source)
				}
			}
			// the same file by another path (absolute, through a symlink):
			// the journal knows it
			sum = runImport(t, Options{Account: cfg, Source: filepath.Join(link, "in", "odd"), Folder: "Odd", JournalDir: jdir})
			checkTally(t, sum, 3, 0, 3, 0)
			if sum.Plan[0].Journal != 3 {
				t.Errorf("second spelling: %+v, want all 3 known to the journal", sum.Plan[0])
			}
			// without the journal: the server is asked, and the Message-ID
			// after the 1.2 MB line is found there
			sum = runImport(t, Options{Account: cfg, Source: "./in/../in/odd", Folder: "Odd", JournalDir: t.TempDir()})
			checkTally(t, sum, 3, 0, 3, 0)
			if sum.Plan[0].Present != 3 {
				t.Errorf("without the journal: %+v, want all 3 found on the server", sum.Plan[0])
			}
			if got := contents(t, cfg)["Odd"]; len(got) != 3 {
				t.Fatalf("Odd holds %d messages, want 3", len(got))
			}
		})
	}
}

// A file put in the place of another at the same path is another source:
// its journal is not the old one's.
func TestJournalKnowsReplacedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "box.mbox")
	one := "From a@example.org Mon Jan  6 08:15:00 2025\nFrom: a@example.org\nSubject: first file\nMessage-ID: <f1@example.org>\n\nbody\n"
	os.WriteFile(p, []byte(one), 0o600)
	cfg := testmail.MemConfig(t, testmail.Mem(t).Addr)
	jdir := t.TempDir()
	checkTally(t, runImport(t, Options{Account: cfg, Source: p, JournalDir: jdir}), 1, 1, 0, 0)
	// another mbox, written beside and renamed over the first (as mail
	// programs do): same path, same offsets, another file
	two := strings.ReplaceAll(strings.ReplaceAll(one, "first", "second"), "f1@", "f2@")
	os.WriteFile(p+".new", []byte(two), 0o600)
	os.Rename(p+".new", p)
	checkTally(t, runImport(t, Options{Account: cfg, Source: p, JournalDir: jdir}), 1, 1, 0, 0)
	if got := contents(t, cfg)["INBOX"]; len(got) != 2 {
		t.Fatalf("INBOX holds %d messages, want 2", len(got))
	}
}

// The bug guard: a tally that does not add up fails the run.
func TestTallyGuard(t *testing.T) {
	mk := func(p FolderPlan, failed ...Failure) *importer {
		return &importer{sum: &Summary{Failed: failed}, plans: map[string]*FolderPlan{p.Folder: &p}}
	}
	var te *TallyError
	// complete, adds up
	im := mk(FolderPlan{Folder: "A", Messages: 4, Appended: 2, Present: 1, Refused: 1}, Failure{Kind: KindMessage, Messages: 1})
	im.sum.Appended = 2
	if err := im.finish(4, true); err != nil || im.sum.Seen != 4 || im.sum.Skipped != 1 || im.sum.Refused != 1 {
		t.Fatalf("%v %s", err, im.sum.Tally())
	}
	// a message neither appended, nor there, nor refused, in a complete run
	im = mk(FolderPlan{Folder: "A", Messages: 4, Appended: 2, Present: 1})
	im.sum.Appended = 2
	if err := im.finish(4, true); !errors.As(err, &te) || !strings.Contains(err.Error(), "1 of 4 messages") {
		t.Fatalf("missing message: %v", err)
	}
	// the same when the run stopped: one not done, no error
	im = mk(FolderPlan{Folder: "A", Messages: 4, Appended: 2, Present: 1})
	im.sum.Appended = 2
	if err := im.finish(4, false); err != nil || im.sum.NotDone != 1 || !strings.Contains(im.sum.Tally(), "1 not done") {
		t.Fatalf("stopped run: %v %s", err, im.sum.Tally())
	}
	// a refusal counted but not listed
	im = mk(FolderPlan{Folder: "A", Messages: 2, Appended: 1, Refused: 1})
	im.sum.Appended = 1
	if err := im.finish(2, true); !errors.As(err, &te) || !strings.Contains(err.Error(), "1 messages refused, 0 listed") {
		t.Fatalf("unlisted refusal: %v", err)
	}
	// more accounted for than seen; and a message lost before grouping
	im = mk(FolderPlan{Folder: "A", Messages: 2, Appended: 3})
	im.sum.Appended = 3
	if err := im.finish(3, true); !errors.As(err, &te) || len(te.Problems) != 2 {
		t.Fatalf("over-counted: %v", err)
	}
}

// In a tree, a mail program may rewrite an mbox (Thunderbird compacts
// folders): the same path and offsets then hold other messages. The
// journal entry of a path and offset is trusted only for the message it
// recorded.
func TestJournalRewrittenMboxInTree(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "Folder.mbox")
	box := func(ids ...string) string {
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, "From a@example.org Mon Jan  6 08:15:00 2025\nFrom: a@example.org\nSubject: %s\nMessage-ID: <%s@example.org>\n\nbody\n\n", id, id)
		}
		return b.String()
	}
	os.WriteFile(p, []byte(box("a1", "a2")), 0o600)
	cfg := testmail.MemConfig(t, testmail.Mem(t).Addr)
	jdir := t.TempDir()
	checkTally(t, runImport(t, Options{Account: cfg, Source: dir, JournalDir: jdir}), 2, 2, 0, 0)
	// compacted: a1 deleted, b1 and b2 new, at the offsets a1 and a2 had
	os.WriteFile(p+".tmp", []byte(box("b1", "b2", "a2")), 0o600)
	os.Rename(p+".tmp", p)
	sum := runImport(t, Options{Account: cfg, Source: dir, JournalDir: jdir})
	checkTally(t, sum, 3, 2, 1, 0)
	if got := contents(t, cfg)["Folder"]; len(got) != 4 {
		t.Fatalf("Folder holds %d messages, want 4 (a1, a2, b1, b2)", len(got))
	}
}
