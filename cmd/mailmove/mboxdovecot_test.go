package main

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/testmail"
)

// An mbox archive written with --mbox-status-headers is read by a real
// Dovecot as its own mbox store (as a user who points Dovecot or mutt at the
// archive would): every message is there, with its flags and keywords, and
// the status lines mailmove added are not part of the messages it serves.
func TestMboxReadByDovecot(t *testing.T) {
	mailUser, err := user.Lookup("mail")
	if err != nil || os.Geteuid() != 0 {
		testmail.RequireOrSkip(t, "this test hands files to Dovecot's mail user and needs root and a mail user (uid %d, %v)", os.Geteuid(), err)
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)
	date := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	mk := func(folder string, i int, body string, flags ...imap.Flag) testmail.Msg {
		raw := fmt.Sprintf("From: a%d@example.org\r\nTo: b@example.org\r\nSubject: message %d\r\nMessage-ID: <m%d@example.org>\r\nDate: Fri, 1 Mar 2024 10:00:00 +0000\r\n\r\n%s", i, i, i, body)
		return testmail.Msg{Folder: folder, Raw: []byte(raw), Flags: flags, Date: date.Add(time.Duration(i) * time.Hour)}
	}
	// go-imap's memory server keeps keywords in lower case
	msgs := []testmail.Msg{
		mk("INBOX", 0, "plain, unread\r\n"),
		mk("INBOX", 1, "read and answered\r\n", imap.FlagSeen, imap.FlagAnswered),
		mk("INBOX", 2, "flagged, with a keyword\r\nFrom the start of a line\r\n", imap.FlagFlagged, "$forwarded"),
		mk("Archive", 3, "deleted but not expunged\r\n", imap.FlagSeen, imap.FlagDeleted),
		mk("Archive", 4, "a draft with two keywords\r\n", imap.FlagDraft, "custom_keyword", "$label1"),
	}
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), msgs)
	out := filepath.Join(t.TempDir(), "a")
	if _, e, code := runCmd(t, "export", "--from", "imap://alice@"+src.Addr+"?tls=none", "--to", "mbox", "--out", out, "--mbox-status-headers"); code != 0 {
		t.Fatalf("export: %d %s", code, e)
	}

	d := testmail.StartDovecotMail(t, "mbox:~/mail:INBOX=~/mail/inbox")
	home := filepath.Join(d.Dir, "home", "src")
	for from, to := range map[string]string{"INBOX.mbox": "mail/inbox", "Archive.mbox": "mail/Archive"} {
		b, err := os.ReadFile(filepath.Join(out, from))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(home, to)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	filepath.Walk(home, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, uid, gid) })

	held := testmail.Held(t, d.Config(t, "imap", "src"))
	norm := func(flags []imap.Flag) string {
		var s []string
		for _, f := range flags {
			if strings.HasPrefix(string(f), `\`) {
				s = append(s, strings.ToLower(string(f)))
			}
		}
		sort.Strings(s)
		return strings.Join(s, " ")
	}
	got := map[string]testmail.Msg{}
	n := 0
	for folder, ms := range held {
		for _, m := range ms {
			n++
			for _, h := range []string{"\r\nStatus:", "\r\nX-Status:", "\r\nX-Keywords:"} {
				if strings.Contains(string(m.Raw), h) {
					t.Errorf("%s: Dovecot serves mailmove's %q line as part of the message:\n%s", folder, h[2:], m.Raw)
				}
			}
			i := strings.Index(string(m.Raw), "Subject: ")
			if i < 0 {
				t.Fatalf("%s: a message without its Subject:\n%s", folder, m.Raw)
			}
			subj, _, _ := strings.Cut(string(m.Raw[i+9:]), "\r\n")
			got[folder+"/"+subj] = m
		}
	}
	if n != len(msgs) {
		t.Errorf("Dovecot reads %d messages, want %d", n, len(msgs))
	}
	for i, m := range msgs {
		h, ok := got[fmt.Sprintf("%s/message %d", m.Folder, i)]
		if !ok {
			t.Errorf("message %d is not in %s as Dovecot reads the archive", i, m.Folder)
			continue
		}
		if norm(h.Flags) != norm(m.Flags) {
			t.Errorf("message %d: Dovecot reads flags %q, the server had %q", i, norm(h.Flags), norm(m.Flags))
		}
		if strings.ReplaceAll(string(h.Raw), "\r\n>From ", "\r\nFrom ") != string(m.Raw) {
			t.Errorf("message %d: Dovecot serves\n%q\nthe server had\n%q", i, h.Raw, m.Raw)
		}
	}
}
