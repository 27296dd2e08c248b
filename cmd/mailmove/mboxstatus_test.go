package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/internal/testmail"
)

// pythonFlags is a Python program that prints, for every message of an
// mbox file, its Subject and mailbox.mboxMessage.get_flags().
const pythonFlags = `
import mailbox, sys
for m in mailbox.mbox(sys.argv[1], create=False):
    print("%s\t%s" % (m["Subject"], "".join(sorted(m.get_flags()))))
`

// mboxFlags is what get_flags() should say for IMAP flags: R for \Seen, O
// always, A \Answered, F \Flagged, D \Deleted, T \Draft (X-Status, as
// Dovecot writes it).
func mboxFlags(flags []imap.Flag) string {
	s := "O"
	for _, f := range flags {
		switch f {
		case imap.FlagSeen:
			s += "R"
		case imap.FlagAnswered:
			s += "A"
		case imap.FlagFlagged:
			s += "F"
		case imap.FlagDeleted:
			s += "D"
		case imap.FlagDraft:
			s += "T"
		}
	}
	b := []byte(s)
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

// export --mbox-status-headers writes flags that Python's mailbox (as mutt
// and Dovecot) reads, check still passes, and import gives the server's
// bytes back exactly, in LF (the default) and CRLF archives.
func TestMboxStatusHeaders(t *testing.T) {
	py := testmail.NeedTool(t, "python3", "python3")
	msgs := testmail.Gen(24, []string{"INBOX", "Archive/2024"}, 23)
	msgs[1].Flags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, "$Forwarded", "Custom_Keyword"}
	msgs[3].Flags = []imap.Flag{imap.FlagDraft, imap.FlagDeleted}
	msgs[5].Flags = []imap.Flag{imap.FlagAnswered}
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), msgs)
	from := "imap://alice@" + src.Addr + "?tls=none"
	for _, eol := range []string{"", "crlf"} {
		t.Run("eol="+eol, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "a")
			args := []string{"export", "--from", from, "--to", "mbox", "--out", out, "--mbox-status-headers"}
			if eol != "" {
				args = append(args, "--mbox-line-endings", eol)
			}
			if _, e, code := runCmd(t, args...); code != 0 {
				t.Fatalf("export: %d %s", code, e)
			}
			for _, folder := range []string{"INBOX", "Archive/2024"} {
				file := filepath.Join(out, filepath.FromSlash(folder)+".mbox")
				b, _ := os.ReadFile(file)
				if (eol == "") == strings.Contains(string(b), "\r\n") {
					t.Fatalf("%s: line endings are not %q", file, eol)
				}
				o, err := exec.Command(py, "-c", pythonFlags, file).CombinedOutput()
				if err != nil {
					t.Fatalf("python: %v\n%s", err, o)
				}
				got := map[string]string{}
				for _, l := range strings.Split(strings.TrimSpace(string(o)), "\n") {
					subj, flags, _ := strings.Cut(l, "\t")
					got[subj] = flags
				}
				n := 0
				for i, m := range msgs {
					if m.Folder != folder {
						continue
					}
					n++
					subj := fmt.Sprintf("message %d", i)
					if got[subj] != mboxFlags(m.Flags) {
						t.Errorf("%s: %s: get_flags() %q, want %q", folder, subj, got[subj], mboxFlags(m.Flags))
					}
				}
				if len(got) != n {
					t.Errorf("%s: Python read %d messages, want %d", folder, len(got), n)
				}
				// (go-imap's memory server keeps keywords in lower case)
				if lb := strings.ToLower(string(b)); folder == "Archive/2024" && !strings.Contains(lb, "x-keywords: $forwarded custom_keyword") && !strings.Contains(lb, "x-keywords: custom_keyword $forwarded") {
					t.Errorf("no X-Keywords line in %s", file)
				}
			}
			if o, e, code := runCmd(t, "check", out); code != 0 {
				t.Fatalf("check: %d %s %s", code, o, e)
			}
			// back to a server: the server's bytes, flags and dates exactly
			dst := testmail.Mem(t)
			if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--to", "imap://alice@"+dst.Addr+"?tls=none", out); code != 0 {
				t.Fatalf("import: %d %s", code, e)
			}
			held := testmail.Held(t, testmail.MemConfig(t, dst.Addr))
			key := func(m testmail.Msg) string {
				fl := make([]string, len(m.Flags))
				for i, f := range m.Flags {
					fl[i] = strings.ToLower(string(f))
				}
				sort.Strings(fl)
				return m.Folder + "\x00" + string(m.Raw) + "\x00" + strings.Join(fl, " ") + "\x00" + m.Date.UTC().String()
			}
			have := map[string]int{}
			for _, ms := range held {
				for _, m := range ms {
					have[key(m)]++
				}
			}
			for i, m := range msgs {
				if have[key(m)] == 0 {
					t.Fatalf("message %d (%s) did not come back exactly", i, m.Folder)
				}
			}
		})
	}
}

// --mbox-layout thunderbird writes Parent.sbd/Child files, which check
// verifies and import reads back exactly.
func TestThunderbirdLayout(t *testing.T) {
	msgs := testmail.Gen(12, []string{"INBOX", "Archive", "Archive/2024", "Archive/2024/Q1", "x.sbd"}, 31)
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), msgs)
	out := filepath.Join(t.TempDir(), "tb")
	args := []string{"export", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", "mbox", "--out", out, "--mbox-layout", "thunderbird"}
	if _, e, code := runCmd(t, args...); code != 0 {
		t.Fatalf("export: %d %s", code, e)
	}
	for _, f := range []string{"INBOX", "Archive", "Archive.sbd/2024", "Archive.sbd/2024.sbd/Q1", "x%2Esbd"} {
		if fi, err := os.Stat(filepath.Join(out, filepath.FromSlash(f))); err != nil || fi.IsDir() {
			t.Errorf("%s: not an mbox file (%v)", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "Archive.mbox")); err == nil {
		t.Error("Archive.mbox in the Thunderbird layout")
	}
	// a re-run keeps the layout without the flag, and refuses another one
	if _, e, code := runCmd(t, args[:len(args)-2]...); code != 0 {
		t.Fatalf("re-run: %d %s", code, e)
	}
	if _, e, code := runCmd(t, append(args[:len(args)-2], "--mbox-layout", "mailmove")...); code != 1 || !strings.Contains(e, "in the thunderbird layout, not mailmove") {
		t.Errorf("another layout: exit %d %s", code, e)
	}
	if o, e, code := runCmd(t, "check", out); code != 0 {
		t.Fatalf("check: %d %s %s", code, o, e)
	}
	dst := testmail.Mem(t)
	if _, e, code := runCmdEnv(t, []string{"MAILMOVE_TO_PASSWORD=secret"}, "import", "--to", "imap://alice@"+dst.Addr+"?tls=none", out); code != 0 {
		t.Fatalf("import: %d %s", code, e)
	}
	have := map[string]bool{}
	for f, ms := range testmail.Held(t, testmail.MemConfig(t, dst.Addr)) {
		for _, m := range ms {
			have[f+"\x00"+string(m.Raw)] = true
		}
	}
	for i, m := range msgs {
		if !have[m.Folder+"\x00"+string(m.Raw)] {
			t.Fatalf("message %d (%s) did not come back exactly", i, m.Folder)
		}
	}
}
