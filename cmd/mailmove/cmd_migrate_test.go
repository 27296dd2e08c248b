package main

import (
	"path/filepath"
	"testing"

	"github.com/mailmove/mailmove/internal/testmail"
)

func TestMigrate(t *testing.T) {
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(40, []string{"INBOX", "Sent", "Archive/2024"}, 3))
	dst := testmail.Mem(t)
	staging := filepath.Join(t.TempDir(), "staging")
	env := []string{"MAILMOVE_FROM_PASSWORD=secret", "MAILMOVE_TO_PASSWORD=secret"}
	args := []string{"migrate", "--from", "imap://alice@" + src.Addr + "?tls=none", "--to", "imap://alice@" + dst.Addr + "?tls=none", "--staging", staging}
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("migrate: %d %s", code, e)
	}
	want := messageIDs(t, src.Addr)
	got := messageIDs(t, dst.Addr)
	for f, ids := range want {
		if len(got[f]) != len(ids) {
			t.Fatalf("%s: %d messages, want %d", f, len(got[f]), len(ids))
		}
	}
	// new mail on the old account: the next run moves just that
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(1, []string{"Sent"}, 99))
	if _, e, code := runCmdEnv(t, env, args...); code != 0 {
		t.Fatalf("second migrate: %d %s", code, e)
	}
	if got := messageIDs(t, dst.Addr); len(got["Sent"]) != len(want["Sent"])+1 || len(got["INBOX"]) != len(want["INBOX"]) {
		t.Fatalf("after the second run: Sent %d, INBOX %d", len(got["Sent"]), len(got["INBOX"]))
	}
}
