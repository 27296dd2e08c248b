package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/internal/testmail"
)

func TestVerifyFindsMissingAndDuplicated(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	msgs := testmail.Gen(12, []string{"INBOX", "Archive/2024"}, 7)
	a, b := testmail.Mem(t), testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, a.Addr), msgs)
	// b: the same, LF only and with an X-TUID added: the same after CRLF
	// normalisation with X-TUID ignored
	var lf []testmail.Msg
	for _, m := range msgs {
		raw := "X-TUID: abcdef\r\n" + string(m.Raw)
		m.Raw = []byte(strings.ReplaceAll(raw, "\r\n", "\n"))
		lf = append(lf, m)
	}
	testmail.Put(t, testmail.MemConfig(t, b.Addr), lf[:11])
	url := func(addr string) string { return "imap://alice@" + addr + "?tls=none" }
	want, err := held(url(a.Addr), "", pw, []string{"X-TUID"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := held(url(b.Addr), "", pw, []string{"x-tuid"})
	if err != nil {
		t.Fatal(err)
	}
	missing, extra := 0, 0
	for _, f := range sortedKeys(want, got) {
		missing += diff(want[f], got[f])
		extra += diff(got[f], want[f])
	}
	if missing != 1 || extra != 0 {
		t.Fatalf("one message missing: found %d missing, %d extra", missing, extra)
	}
	// the last one twice in place of once: still one missing, one extra
	testmail.Put(t, testmail.MemConfig(t, b.Addr), []testmail.Msg{lf[0]})
	got, _ = held(url(b.Addr), "", pw, []string{"X-TUID"})
	missing, extra = 0, 0
	for _, f := range sortedKeys(want, got) {
		missing += diff(want[f], got[f])
		extra += diff(got[f], want[f])
	}
	if missing != 1 || extra != 1 {
		t.Fatalf("a duplicate in place of a missing message: %d missing, %d extra", missing, extra)
	}
	// without ignoring X-TUID nothing matches
	got, _ = held(url(b.Addr), "", pw, nil)
	if n := diff(want["INBOX"], got["INBOX"]); n != len(want["INBOX"]) && len(want["INBOX"]) > 0 {
		t.Fatalf("X-TUID not ignored, yet %d of %d INBOX messages match", len(want["INBOX"])-n, len(want["INBOX"]))
	}
}
