package imports

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/internal/testmail"
)

// Trees written by the programs themselves (mbsync, offlineimap, Dovecot)
// from the test Dovecot, imported into another user and compared with what
// the source holds.

// layoutFolders are the corpus' folders: nested, non-ASCII, a special one.
var layoutFolders = []string{"INBOX", "Archive", "Archive/2024", "Projekte/Alpha", "Entwürfe", "Sent"}

// layoutCorpus is small: From and >From body lines, no final newline on
// some, \Seen, \Deleted, \Answered, \Flagged, \Draft and keywords.
func layoutCorpus(folders []string) []testmail.Msg {
	msgs := testmail.Gen(2*len(folders), folders, 6)
	for i := range msgs {
		msgs[i].Date = time.Date(2024, 3, 1+i, 10, 0, 0, 0, time.UTC)
		switch i % 4 {
		case 1:
			msgs[i].Flags = append(msgs[i].Flags, imap.FlagAnswered, imap.FlagFlagged, "Projekt_X")
		case 2:
			msgs[i].Flags = append(msgs[i].Flags, imap.FlagDraft, "$Forwarded")
		}
	}
	return msgs
}

// compareOpts say what the program that wrote a tree keeps.
type compareOpts struct {
	keywords bool // keywords (mbsync 1.4 and offlineimap keep only system flags)
	dates    bool // INTERNALDATE (the sync programs leave the copy's time; the Date header is used)
	strip    bool // Dovecot's mbox headers (X-UID, Status, ...) are in the file
}

// describeAs is describe with what the program could not keep left out.
func describeAs(ms []stored, o compareOpts) []string {
	var out []string
	for _, m := range ms {
		raw := m.raw
		if o.strip {
			raw = stripDovecotMboxHeaders(raw)
		}
		var fl []string
		for _, f := range strings.Fields(m.flags) {
			if o.keywords || strings.HasPrefix(f, `\`) {
				fl = append(fl, f)
			}
		}
		date := m.date
		if !o.dates {
			if msg, err := mail.ReadMessage(bytes.NewReader(m.raw)); err == nil {
				date, _ = msg.Header.Date()
			}
		}
		out = append(out, fmt.Sprintf("%s %s %s", hash(raw)[:16], date.UTC().Format(time.RFC3339), strings.Join(fl, " ")))
	}
	sort.Strings(out)
	return out
}

// stripDovecotMboxHeaders removes the header fields Dovecot's mbox store
// adds (and hides when it serves the message).
func stripDovecotMboxHeaders(b []byte) []byte {
	b = crlf(b)
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return b
	}
	var out []byte
	for _, l := range bytes.SplitAfter(b[:end+2], []byte("\r\n")) {
		name, _, _ := bytes.Cut(l, []byte(":"))
		switch strings.ToLower(string(name)) {
		case "x-imapbase", "x-imap", "x-uid", "status", "x-status", "x-keywords", "content-length":
			continue
		}
		out = append(out, l...)
	}
	return append(out, b[end+2:]...)
}

// sameAs checks that dst holds what src holds, folder by folder (every
// folder of src, nothing else), as far as o says the program kept it.
func sameAs(t *testing.T, want, got map[string][]stored, o compareOpts) {
	t.Helper()
	for f, ms := range want {
		w, g := describeAs(ms, o), describeAs(got[f], compareOpts{keywords: o.keywords, dates: true, strip: o.strip})
		if strings.Join(w, "\n") != strings.Join(g, "\n") {
			t.Errorf("folder %s: %d messages, want %d; first difference:\n%s", f, len(got[f]), len(ms), firstDiff(w, g))
		}
	}
	for f := range got {
		if _, ok := want[f]; !ok {
			t.Errorf("folder %s (%d messages) is not in the source", f, len(got[f]))
		}
	}
}

// importTree imports a tree into dst (emptied first), checks it against
// want, then imports it again: nothing more is appended.
func importTree(t *testing.T, dst *account.Config, tree string, want map[string][]stored, o compareOpts) {
	t.Helper()
	clearAccount(t, dst)
	jdir := t.TempDir()
	sum := runImport(t, Options{Account: dst, Source: tree, JournalDir: jdir})
	if len(sum.Failed) != 0 {
		t.Errorf("failures: %v", sum.Failed)
	}
	n := 0
	for _, ms := range want {
		n += len(ms)
	}
	if sum.Appended != n {
		t.Errorf("appended %d, the source holds %d", sum.Appended, n)
	}
	sameAs(t, want, contents(t, dst), o)
	if s := runImport(t, Options{Account: dst, Source: tree, JournalDir: t.TempDir()}); s.Appended != 0 || len(s.Failed) != 0 {
		t.Errorf("second import appended %d; failures %v", s.Appended, s.Failed)
	}
}

func port(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func TestSyncProgramTrees(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, layoutCorpus(layoutFolders))
	want := contents(t, src)
	if len(want) != len(layoutFolders) {
		t.Fatalf("the source holds %v", keys(want))
	}
	dst := d.Config(t, "imaps", "dst")

	for _, style := range []string{"Verbatim", "Maildir++", "Legacy"} {
		t.Run("mbsync-"+style, func(t *testing.T) {
			mbsync := testmail.NeedTool(t, "mbsync", "isync")
			dir := t.TempDir()
			tree := filepath.Join(dir, "mail")
			store := fmt.Sprintf("Path %s/\nInbox %s/INBOX\n", tree, tree)
			if style == "Maildir++" {
				store = fmt.Sprintf("Inbox %s\n", tree)
			}
			rc := fmt.Sprintf(`IMAPAccount src
Host 127.0.0.1
Port %s
User src
Pass pw
SSLType IMAPS
CertificateFile %s

IMAPStore remote
Account src

MaildirStore local
%sSubFolders %s

Channel ch
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
`, port(t, d.TLSAddr), filepath.Join(d.Dir, "cert.pem"), store, style)
			cfg := filepath.Join(dir, "mbsyncrc")
			os.WriteFile(cfg, []byte(rc), 0o600)
			os.MkdirAll(tree, 0o700)
			runTool(t, mbsync, "-q", "-c", cfg, "-a")
			if style == "Verbatim" {
				if _, err := os.Stat(filepath.Join(tree, "Entw&APw-rfe", "cur")); err != nil {
					t.Fatalf("mbsync did not write the folder name in modified UTF-7: %v", err)
				}
				// --dry-run shows the mapping before anything is written
				sum := runImport(t, Options{Account: dst, Source: tree, DryRun: true})
				var mapping []string
				for _, p := range sum.Plan {
					mapping = append(mapping, p.Sources+" -> "+p.Folder)
				}
				sort.Strings(mapping)
				if got := strings.Join(mapping, ", "); got != "Archive -> Archive, Archive/2024 -> Archive/2024, Entwürfe -> Entwürfe, INBOX -> INBOX, Projekte/Alpha -> Projekte/Alpha, Sent -> Sent" {
					t.Errorf("dry run mapping: %s", got)
				}
			}
			importTree(t, dst, tree, want, compareOpts{})
		})
	}
	for _, sep := range []string{".", "/"} {
		t.Run("offlineimap-sep"+sep, func(t *testing.T) {
			offlineimap := testmail.NeedTool(t, "offlineimap", "offlineimap3")
			dir := t.TempDir()
			tree := filepath.Join(dir, "mail")
			rc := fmt.Sprintf(`[general]
accounts = t
metadata = %s
ui = quiet
[Account t]
localrepository = L
remoterepository = R
[Repository L]
type = Maildir
localfolders = %s
sep = %s
[Repository R]
type = IMAP
remotehost = 127.0.0.1
remoteport = %s
remoteuser = src
remotepass = pw
ssl = no
starttls = no
`, filepath.Join(dir, "meta"), tree, sep, port(t, d.IMAPAddr))
			cfg := filepath.Join(dir, "offlineimaprc")
			os.WriteFile(cfg, []byte(rc), 0o600)
			os.MkdirAll(tree, 0o700)
			runTool(t, offlineimap, "-c", cfg, "-o", "-u", "quiet")
			if sep == "." {
				if _, err := os.Stat(filepath.Join(tree, "Archive.2024", "cur")); err != nil {
					t.Fatalf("offlineimap did not write Archive.2024: %v", err)
				}
			}
			importTree(t, dst, tree, want, compareOpts{})
		})
	}
}

// copyTree copies a Dovecot user's mail (as root: Dovecot runs as mail).
func copyTree(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return to
}

func TestDovecotOwnTrees(t *testing.T) {
	for _, c := range []struct {
		name, location, dir string
		folders             []string
		o                   compareOpts
	}{
		// the test configuration's Maildir++; the copy is of the user's
		// home, the folder that contains the Maildir
		{"Maildir++", "", "", layoutFolders, compareOpts{keywords: true, dates: true}},
		{"LAYOUT=fs", "maildir:~/Maildir:LAYOUT=fs", "Maildir", layoutFolders, compareOpts{keywords: true, dates: true}},
		// mbox: a folder is a file, so none has subfolders; mboxcl2 with
		// Content-Length and unquoted From lines, Dovecot's own headers
		{"mbox", "mbox:~/mail:INBOX=~/mail/inbox", "mail", []string{"INBOX", "Entwürfe", "Sent"}, compareOpts{keywords: true, dates: true, strip: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := testmail.StartDovecotMail(t, c.location)
			src := d.Config(t, "imaps", "src")
			testmail.Put(t, src, layoutCorpus(c.folders))
			want := contents(t, src)
			tree := copyTree(t, filepath.Join(d.Dir, "home", "src", c.dir))
			if c.dir == "" {
				// a home has more than the Maildir: Sieve scripts
				os.WriteFile(filepath.Join(tree, ".dovecot.sieve"), []byte("keep;\n"), 0o600)
				os.MkdirAll(filepath.Join(tree, "sieve"), 0o700)
				os.WriteFile(filepath.Join(tree, "sieve", "main.sieve"), []byte("keep;\n"), 0o600)
			}
			if c.name != "mbox" {
				kw, err := filepath.Glob(filepath.Join(tree, "*", "dovecot-keywords"))
				if len(kw) == 0 {
					kw, err = filepath.Glob(filepath.Join(tree, "dovecot-keywords"))
				}
				if len(kw) == 0 || err != nil {
					t.Fatalf("no dovecot-keywords in the copy")
				}
			}
			importTree(t, d.Config(t, "imaps", "dst"), tree, want, c.o)
		})
	}
}

// scanned is what Scan found: per folder, "Subject [flags]" of each
// message, and the bodies by subject; and what it reported.
type scanned struct {
	folders map[string][]string
	raw     map[string][]byte
	bad     []*InputError
}

func scanAll(t *testing.T, src string) *scanned {
	t.Helper()
	s := &scanned{folders: map[string][]string{}, raw: map[string][]byte{}}
	err := Scan(src, FormatAuto, false, func(it *Item) error {
		r, err := it.Open()
		if err != nil {
			t.Fatalf("%s: %v", it.Source, err)
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(r)
		r.Close()
		if err != nil {
			t.Fatalf("%s: %v", it.Source, err)
		}
		subj := ""
		if m, err := mail.ReadMessage(bytes.NewReader(b.Bytes())); err == nil {
			subj = m.Header.Get("Subject")
		}
		s.folders[it.Meta.Folder] = append(s.folders[it.Meta.Folder], subj+" ["+normFlags(it.Meta.Flags)+"]")
		s.raw[subj] = b.Bytes()
		return nil
	}, func(err error) {
		var ie *InputError
		if !errors.As(err, &ie) {
			t.Errorf("reported error is not an *InputError: %v", err)
			return
		}
		s.bad = append(s.bad, ie)
	})
	if err != nil {
		t.Fatal(err)
	}
	for f := range s.folders {
		sort.Strings(s.folders[f])
	}
	return s
}

func (s *scanned) check(t *testing.T, want map[string][]string) {
	t.Helper()
	for f, w := range want {
		sort.Strings(w)
		if strings.Join(s.folders[f], " | ") != strings.Join(w, " | ") {
			t.Errorf("folder %q: %q, want %q", f, s.folders[f], w)
		}
	}
	for f := range s.folders {
		if _, ok := want[f]; !ok {
			t.Errorf("unexpected folder %q: %q", f, s.folders[f])
		}
	}
}

// Documented-layout fixtures (testdata/import/layouts): Thunderbird,
// Apple Mail, KMail, Courier and Evolution cannot run here (nor a Courier
// server for offlineimap to copy from), so their trees
// are written by hand after their documented layouts; the mbox dialects are
// as mutt writes them. Mail programs' metadata files are in them and must
// be skipped silently.
func TestDocumentedLayouts(t *testing.T) {
	layout := func(n string) string { return fixture(filepath.Join("layouts", n)) }
	for _, c := range []struct {
		dir  string
		want map[string][]string
	}{
		{"thunderbird/Local Folders", map[string][]string{
			"INBOX":          {"tb inbox 1 [$label1 \\seen todo]", "tb inbox 2 [\\deleted \\flagged \\seen]"},
			"INBOX/Receipts": {"tb receipt [$forwarded \\answered \\seen]"},
			"Budget%2024":    {"tb budget []"},
		}},
		{"apple", map[string][]string{
			"INBOX":          {"apple inbox []"},
			"Projects":       {"apple projects []"},
			"Projects/Alpha": {"apple alpha 1 []", "apple alpha 2 []"},
		}},
		{"kmail/local-mail", map[string][]string{
			"INBOX":           {"kmail inbox [\\seen]", "kmail new []"},
			"INBOX/Work":      {"kmail work [\\flagged \\seen]"},
			"INBOX/Work/Deep": {"kmail deep [\\answered \\seen]"},
			"sent-mail":       {"kmail sent [\\seen]"},
		}},
		{"courier", map[string][]string{
			"INBOX":       {"courier inbox 1 [$important \\seen work]", "courier inbox 2 [later work]"},
			"Sent":        {"courier sent [\\seen]"},
			"Archiv/2024": {"courier archive [\\seen]"},
		}},
		// offlineimap's default sep = . from a Courier server (namespace INBOX.)
		{"offlineimap-courier", map[string][]string{
			"INBOX":       {"oi inbox [\\seen]"},
			"Sent":        {"oi sent [\\seen]"},
			"Archiv/2024": {"oi archive [\\answered \\seen]"},
			"Entwürfe":    {"oi draft []"},
		}},
		{"evolution/local", map[string][]string{
			"INBOX": {"evolution inbox []"},
		}},
		{"mboxes", map[string][]string{
			"mutt-mboxcl2": {"mutt one [\\seen]", "mutt two []"},
			"mboxcl2-crlf": {"crlf one []", "crlf two []"},
			"blank-first":  {"blank first []"},
		}},
	} {
		t.Run(c.dir, func(t *testing.T) {
			s := scanAll(t, layout(c.dir))
			for _, b := range s.bad {
				t.Errorf("reported: %v", b)
			}
			s.check(t, c.want)
		})
	}
	s := scanAll(t, layout("mboxes"))
	if got := string(s.raw["mutt one"]); !strings.HasSuffix(got, "\n\nFrom the body, not quoted\n\nFrom a second one after a blank line\nend\n") {
		t.Errorf("mutt's mboxcl2 body: %q", got)
	}
	if got := string(s.raw["crlf one"]); !strings.HasSuffix(got, "\r\n\r\nFrom the body\r\n\r\nFrom again\r\n") {
		t.Errorf("CRLF mboxcl2 body: %q", got)
	}
	s = scanAll(t, layout("thunderbird/Local Folders"))
	if got := string(s.raw["tb inbox 2"]); !strings.Contains(got, "\nFrom the body, mboxo does not quote\n") {
		t.Errorf("Thunderbird body: %q", got)
	}
}
