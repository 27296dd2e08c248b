package imports

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// Proton Mail Bridge (the stand-in) as source, Dovecot as target.
func TestBridgeToDovecot(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	src := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	out := exportTo(t, src, archive.Mbox)
	d := testmail.StartDovecot(t)
	dst := d.Config(t, "imaps", "dst")
	sum := runImport(t, Options{Account: dst, Source: out})
	got := contents(t, dst)
	want := contents(t, src)
	// Bridge's folders arrive under their own names (Folders/ dropped);
	// the message only in All Mail goes to Archive.
	rename := map[string]string{"Folders/Work": "Work", "Folders/Work/2024": "Work/2024", "Folders/Reisen & Urlaub": "Reisen & Urlaub"}
	// Proton labels (Labels/...) come back as keywords of the copies, as
	// migrate sets them
	labels := map[string][]string{}
	for f, ms := range want {
		if l, ok := strings.CutPrefix(f, "Labels/"); ok {
			for _, m := range ms {
				_, pm := account.HeaderIDs(m.raw)
				labels[pm] = append(labels[pm], keyword(l))
			}
		}
	}
	for f, ms := range want {
		if strings.HasPrefix(f, "Labels/") || f == "Starred" || f == "All Mail" {
			delete(want, f)
			continue
		}
		for i, m := range ms {
			if _, pm := account.HeaderIDs(m.raw); len(labels[pm]) > 0 {
				ms[i].flags = normFlags(append(strings.Fields(m.flags), labels[pm]...))
			}
		}
	}
	if len(labels) == 0 {
		t.Fatal("no labelled message on the stand-in")
	}
	// every message of every folder, a message in two folders (INBOX and
	// Sent, Work and Archive) in both
	n := 0
	for _, ms := range want {
		n += len(ms)
	}
	if len(sum.Failed) != 0 || sum.Appended != n+1 {
		t.Fatalf("appended %d, failures %v; want %d", sum.Appended, sum.Failed, n+1)
	}
	if len(got["Archive"]) != len(want["Archive"])+1 {
		t.Errorf("Archive: %d, want %d + the All-Mail-only message", len(got["Archive"]), len(want["Archive"]))
	}
	delete(want, "Archive")
	sameMail(t, want, got, rename)
	// a re-run adds nothing
	if s := runImport(t, Options{Account: dst, Source: out}); s.Appended != 0 || len(s.Failed) != 0 {
		t.Fatalf("re-run: appended %d, failures %v", s.Appended, s.Failed)
	}
}

// Dovecot as source, Proton Mail Bridge (the stand-in) as target.
func TestDovecotToBridge(t *testing.T) {
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	msgs := testmail.Gen(20, []string{"INBOX", "Sent", "Projects/2024"}, 5)
	// no From: Bridge would refuse it, so it is reported and skipped
	msgs = append(msgs, testmail.Msg{Folder: "INBOX", Raw: []byte("Subject: no from\r\nDate: Mon, 06 Jan 2025 09:15:00 +0100\r\n\r\nx\r\n")})
	// an instance-local gluon ID from another Bridge: stripped
	msgs = append(msgs, testmail.Msg{Folder: "INBOX", Raw: []byte("X-Pm-Gluon-Id: 11111111-2222-3333-4444-555555555555\r\nFrom: a@example.org\r\nSubject: gluon id\r\nDate: Mon, 06 Jan 2025 09:15:00 +0100\r\nMessage-ID: <gl@example.org>\r\n\r\nx\r\n")})
	for i := range msgs {
		var fl []imap.Flag
		for _, f := range msgs[i].Flags {
			if f != "$Label1" {
				fl = append(fl, f)
			}
		}
		msgs[i].Flags = fl
	}
	testmail.Put(t, src, msgs)
	out := exportTo(t, src, archive.EML)

	br := testmail.StartBridge(t, 0)
	dst := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	jdir := t.TempDir()
	// Proton's size limit, lowered so that the 200 KB messages of the corpus are over it.
	defer func(old int64) { bridgeMaxSize = old }(bridgeMaxSize)
	bridgeMaxSize = 100 << 10
	big := 0
	for _, m := range msgs {
		if len(m.Raw) > 100<<10 {
			big++
		}
	}
	sum := runImport(t, Options{Account: dst, Source: out, JournalDir: jdir})
	if !sum.Bridge {
		t.Fatal("target not seen as Bridge")
	}
	var noFrom, tooBig int
	for _, f := range sum.Failed {
		switch {
		case strings.Contains(f.Error, "From and a Date"):
			noFrom++
		case strings.Contains(f.Error, "over Proton's import limit"):
			tooBig++
		}
	}
	if noFrom != 1 || tooBig != big || len(sum.Failed) != 1+big || big == 0 {
		t.Fatalf("failures %v (want 1 without From and %d too big)", sum.Failed, big)
	}
	if sum.Appended != len(msgs)-1-big {
		t.Fatalf("appended %d, want %d", sum.Appended, len(msgs)-1-big)
	}
	bridgeMaxSize = 70 << 20
	sum = runImport(t, Options{Account: dst, Source: out, JournalDir: jdir})
	if sum.Appended != big {
		t.Fatalf("with the real limit: appended %d, want the %d big ones", sum.Appended, big)
	}
	got := contents(t, dst)
	// 20 generated over INBOX, Sent and Projects/2024, plus the gluon-id one in INBOX
	if len(got["Folders/Projects/2024"]) != 6 || len(got["Sent"]) != 7 || len(got["INBOX"]) != 8 {
		t.Fatalf("folders on Bridge: %v", keys(got))
	}
	gl := find(t, got["INBOX"], "Subject: gluon id")
	if bytes.Contains(gl.raw, []byte("11111111-2222")) {
		t.Fatal("X-Pm-Gluon-Id of another Bridge was not stripped")
	}
	if s := runImport(t, Options{Account: dst, Source: out, JournalDir: t.TempDir()}); s.Appended != 0 {
		t.Fatalf("re-run appended %d", s.Appended)
	}
}

// Proton labels from an archive go back as Labels/... on a Bridge.
func TestBridgeLabelsRoundTrip(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	out := exportTo(t, br.Config(t, "bridge://me@proton.test@"+br.Addr), archive.Mbox)
	want := contents(t, br.Config(t, "bridge://me@proton.test@"+br.Addr))
	br2 := testmail.StartBridge(t, 0)
	dst := br2.Config(t, "bridge://me@proton.test@"+br2.Addr)
	sum := runImport(t, Options{Account: dst, Source: out})
	if len(sum.Failed) != 0 {
		t.Fatalf("failures %v", sum.Failed)
	}
	// The stand-in's connector applies label changes asynchronously (a
	// ticker of 50 ms), as Bridge applies Proton's events: give it a moment.
	time.Sleep(time.Second)
	got := contents(t, dst)
	// A message in two folders (INBOX and Sent) is appended to each: on a
	// Bridge target they are two Proton messages, each with the labels.
	folders := map[string]int{}
	for f, ms := range want {
		if f == "All Mail" || f == "Starred" || strings.HasPrefix(f, "Labels/") {
			continue
		}
		for _, id := range pmIDs(ms) {
			folders[id]++
		}
	}
	for _, l := range []string{"Labels/Important", "Labels/Travel"} {
		n := 0
		for _, id := range pmIDs(want[l]) {
			n += max(1, folders[id])
		}
		if len(got[l]) != n || n == 0 {
			t.Errorf("%s: %d messages, want %d; missing: %v", l, len(got[l]), n, missingPM(want[l], got[l]))
		}
	}
	if len(got["Folders/Work"]) != len(want["Folders/Work"]) {
		t.Errorf("Folders/Work: %d, want %d", len(got["Folders/Work"]), len(want["Folders/Work"]))
	}
}

// pmIDs lists the X-Pm-Internal-Id of messages.
func pmIDs(ms []stored) []string {
	var out []string
	for _, m := range ms {
		for _, l := range strings.Split(string(m.raw), "\r\n") {
			if strings.HasPrefix(l, "X-Pm-Internal-Id: ") {
				out = append(out, strings.TrimPrefix(l, "X-Pm-Internal-Id: "))
			}
		}
	}
	return out
}

// missingPM lists the X-Pm-Internal-Id of messages in want but not in got.
func missingPM(want, got []stored) []string {
	ids := func(ms []stored) map[string]bool {
		out := map[string]bool{}
		for _, m := range ms {
			for _, l := range strings.Split(string(m.raw), "\r\n") {
				if strings.HasPrefix(l, "X-Pm-Internal-Id: ") {
					out[strings.TrimPrefix(l, "X-Pm-Internal-Id: ")] = true
				}
			}
		}
		return out
	}
	g := ids(got)
	var miss []string
	for id := range ids(want) {
		if !g[id] {
			miss = append(miss, id)
		}
	}
	return miss
}
