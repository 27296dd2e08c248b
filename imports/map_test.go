package imports

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/internal/testmail"
	"github.com/mailmove/mailmove/message"
)

func TestTargetFolders(t *testing.T) {
	// A German Mailbox.org-like account: Sent is "Gesendet", marked \Sent
	// in LIST without the SPECIAL-USE capability.
	folders := []*account.Folder{
		{Name: "INBOX", Segments: []string{"INBOX"}},
		{Name: "Gesendet", Segments: []string{"Gesendet"}, Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}},
		{Name: "Papierkorb", Segments: []string{"Papierkorb"}, Attrs: []imap.MailboxAttr{imap.MailboxAttrTrash}},
		{Name: "Spam", Segments: []string{"Spam"}},
	}
	o := &Options{Map: map[string]string{"Old/Stuff": "Archive/Stuff"}}
	for src, want := range map[string]string{
		"INBOX":         "INBOX",
		"Sent":          "Gesendet",
		"Sent Items":    "Gesendet",
		"Trash":         "Papierkorb",
		"Junk":          "Spam", // no \Junk attribute: by name
		"Projects/2024": "Projects/2024",
		"Old/Stuff":     "Archive/Stuff",
	} {
		it := &Item{Meta: message.Meta{Folder: src}}
		if got, skip := o.targetFor(it, folders, false); got != want || skip != "" {
			t.Errorf("%s -> %q (%s), want %q", src, got, skip, want)
		}
	}
	// a role recorded in an archive wins over the name
	it := &Item{Meta: message.Meta{Folder: "Elementos enviados"}, Role: `\Sent`}
	if got, _ := o.targetFor(it, folders, false); got != "Gesendet" {
		t.Errorf("role \\Sent -> %q", got)
	}
	p := &Options{Prefix: "Imported"}
	if got, _ := p.targetFor(&Item{Meta: message.Meta{Folder: "A/B"}}, folders, false); got != "Imported/A/B" {
		t.Errorf("prefix: %q", got)
	}
	// Bridge: user folders under Folders/, All Mail to Archive, no nested labels
	bf := []*account.Folder{{Name: "INBOX", Segments: []string{"INBOX"}}, {Name: "Sent", Segments: []string{"Sent"}, Attrs: []imap.MailboxAttr{imap.MailboxAttrSent}},
		{Name: "Archive", Segments: []string{"Archive"}, Attrs: []imap.MailboxAttr{imap.MailboxAttrArchive}}}
	for src, want := range map[string]string{"Projects/2024": "Folders/Projects/2024", "Sent": "Sent", "All Mail": "Archive", " spaced ": "Folders/spaced"} {
		if got, skip := o.targetFor(&Item{Meta: message.Meta{Folder: src}}, bf, true); got != want {
			t.Errorf("bridge: %s -> %q (%s), want %q", src, got, skip, want)
		}
	}
	if _, skip := (&Options{Folder: "Labels/A/B"}).targetFor(&Item{}, bf, true); skip == "" {
		t.Error("nested label accepted on Bridge")
	}
	im := &importer{delim: '.'}
	if got := im.serverName([]string{"A", "B.C"}); got != "A.B_C" {
		t.Errorf("serverName with '.' delimiter: %q", got)
	}
}

func TestAllowedFlags(t *testing.T) {
	in := []string{`\Seen`, `\Recent`, `$Label`, `\Answered`, `\Custom`}
	str := func(f []imap.Flag) string {
		var s []string
		for _, x := range f {
			s = append(s, string(x))
		}
		return strings.Join(s, " ")
	}
	if got := str(allowedFlags(in, []imap.Flag{imap.FlagSeen, imap.FlagWildcard})); got != `\Seen $Label \Answered` {
		t.Errorf("with \\*: %q", got)
	}
	if got := str(allowedFlags(in, []imap.Flag{imap.FlagSeen, imap.FlagFlagged})); got != `\Seen \Answered` {
		t.Errorf("without \\*: %q", got)
	}
	if got := str(allowedFlags(in, nil)); got != `\Seen $Label \Answered \Custom` {
		t.Errorf("no PERMANENTFLAGS: %q", got)
	}
}

func TestProtonExportAndSameSizeWithoutMessageID(t *testing.T) {
	srv := testmail.Mem(t)
	cfg := testmail.MemConfig(t, srv.Addr)
	runImport(t, Options{Account: cfg, Source: fixture("proton-export")})
	got := contents(t, cfg)
	m := find(t, got["INBOX"], "exported by Proton")
	if m.flags != `\answered \flagged \seen` || !m.date.Equal(time.Unix(1736848800, 0)) {
		t.Errorf("Proton export: flags %q date %v", m.flags, m.date)
	}
	// Two different messages without Message-ID, of the same size: the
	// second is not mistaken for the first.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.eml"), []byte("From: a@tuta.com\r\nSubject: one\r\n\r\nAAAA\r\n"), 0o600)
	runImport(t, Options{Account: cfg, Source: dir, Folder: "Tuta"})
	os.WriteFile(filepath.Join(dir, "b.eml"), []byte("From: a@tuta.com\r\nSubject: two\r\n\r\nBBBB\r\n"), 0o600)
	sum := runImport(t, Options{Account: cfg, Source: dir, Folder: "Tuta"})
	if sum.Appended != 1 {
		t.Fatalf("appended %d, want 1 (b.eml)", sum.Appended)
	}
}
