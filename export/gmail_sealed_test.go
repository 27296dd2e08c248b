package export

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/gmailstub"
)

// TestGmailSealed: a Gmail account exported into an encrypted archive keeps
// its labels and thread ids sealed (no label name in clear anywhere in the
// archive), --refresh-flags still sees a label change through the clear
// index's keyed hash, and a reader with the identity gets the labels back.
func TestGmailSealed(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	s := gmailstub.StartT(t, gmailstub.Options{})
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	a := s.Add(gmailstub.Mail("g1@x", "a", 300), d, 0, []string{`\Inbox`, "Projekt-Geheim"})
	s.Add(gmailstub.Mail("g2@x", "b", 300), d, 0, []string{"Projekt-Geheim", "Steuer-2024"})
	out := t.TempDir()
	run := func(o Options) *Summary {
		t.Helper()
		arch, err := archive.OpenSealed(out, archive.EML, false, "", "test", archive.Sealing{Recipients: []age.Recipient{id.Recipient()}})
		if err != nil {
			t.Fatal(err)
		}
		o.Account, o.Archive, o.Log = s.Config(t), arch, t.Logf
		sum, err := Run(context.Background(), o)
		if cerr := arch.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	if sum := run(Options{}); sum.Messages != 2 {
		t.Fatalf("exported %d messages, want 2", sum.Messages)
	}
	s.Relabel(a, []string{"Projekt-Geheim", "Urlaub-Mallorca"}, `\Seen`)
	if sum := run(Options{RefreshFlags: true}); sum.FlagsUpdated != 1 || sum.Messages != 0 {
		t.Fatalf("--refresh-flags: %+v, want 1 update", sum)
	}
	if sum := run(Options{RefreshFlags: true}); sum.FlagsUpdated != 0 {
		t.Fatalf("second refresh: %d updated, want 0", sum.FlagsUpdated)
	}
	filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		// (a label that is a message's folder is a folder name, which stays in
		// clear like every folder name; the others must not show)
		for _, l := range []string{"Steuer-2024", "Urlaub-Mallorca", "g1@x", "g2@x"} {
			if bytes.Contains(b, []byte(l)) {
				t.Errorf("%s holds %q in clear", p, l)
			}
		}
		return nil
	})
	r, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.SetIdentities([]age.Identity{id}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range r.Folders() {
		recs, err := r.Records(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.MessageID == "g1@x" {
				found = true
				if !slices.Equal(rec.GmailLabels, []string{"Projekt-Geheim", "Urlaub-Mallorca"}) || rec.GmailThrID == "" || !slices.Contains(rec.Flags, `\Seen`) {
					t.Errorf("g1 read back: labels %v, thread %q, flags %v", rec.GmailLabels, rec.GmailThrID, rec.Flags)
				}
			}
		}
	}
	if !found {
		t.Error("g1 not found with the identity")
	}
}
