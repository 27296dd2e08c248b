package export

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// exportSealed runs an export into an archive encrypted to id.
func exportSealed(t *testing.T, out string, f archive.Format, id *age.X25519Identity, o Options) *Summary {
	t.Helper()
	a, err := archive.OpenSealed(out, f, false, "", "test", archive.Sealing{Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	o.Archive, o.Log = a, t.Logf
	sum, err := Run(context.Background(), o)
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return sum
}

// sealedRecords reads an encrypted archive's records of folder with id.
func sealedRecords(t *testing.T, out, folder string, id *age.X25519Identity) []archive.Record {
	t.Helper()
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.SetIdentities([]age.Identity{id}); err != nil {
		t.Fatal(err)
	}
	recs, err := a.Records(folder)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// In an encrypted archive, written without the private key, a UIDVALIDITY
// change still matches the stored messages by content (through the clear
// tags), and --refresh-flags still sees exactly the changed flags.
func TestSealedRescanAndRefreshFlags(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			ts := startServer(t)
			msgs := testmail.Gen(20, []string{"Box"}, 4)
			ts.put(t, msgs)
			out := filepath.Join(t.TempDir(), "out")
			cfg := ts.config(t, ts.addr)
			exportSealed(t, out, f, id, Options{Account: cfg, Connections: 1})

			c, err := cfg.Dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Delete("Box").Wait(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			more := testmail.Gen(2, []string{"Box"}, 5)
			ts.put(t, append(append([]testmail.Msg{}, msgs...), more...))
			if sum := exportSealed(t, out, f, id, Options{Account: cfg, Connections: 1}); sum.Messages != 2 || sum.Duplicates != 20 {
				t.Fatalf("after renumbering: %d new, %d matched; want 2 and 20", sum.Messages, sum.Duplicates)
			}

			c, err = cfg.Dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			sel, err := c.Select("Box", nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			var set imap.UIDSet
			set.AddNum(1)
			if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Work"}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			run := func() *Summary {
				return exportSealed(t, out, f, id, Options{Account: cfg, Connections: 1, RefreshFlags: true})
			}
			if sum := run(); sum.FlagsUpdated != 1 || sum.Messages != 0 {
				t.Fatalf("flags updated on %d messages (want 1), %d new", sum.FlagsUpdated, sum.Messages)
			}
			if sum := run(); sum.FlagsUpdated != 0 {
				t.Fatalf("second refresh updated %d", sum.FlagsUpdated)
			}
			found := false
			for _, r := range sealedRecords(t, out, "Box", id) {
				if r.UIDValidity == sel.UIDValidity && r.UID == 1 {
					found = true
					if got := normFlags(r.Flags); got != `$label1 $work \deleted \flagged \seen` {
						t.Fatalf("flags after refresh: %s", got)
					}
				}
			}
			if !found {
				t.Fatal("UID 1 of the new UIDVALIDITY is not in the index")
			}
		})
	}
}

// recordSet describes every record of an archive: folder, UID, SHA-256,
// Proton ID, labels, flags, alias and label copy.
func recordSet(t *testing.T, out string, id *age.X25519Identity) []string {
	t.Helper()
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if id != nil {
		if err := a.SetIdentities([]age.Identity{id}); err != nil {
			t.Fatal(err)
		}
	}
	var set []string
	for _, f := range a.Folders() {
		recs, err := a.Records(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			labels := append([]string{}, r.Labels...)
			sort.Strings(labels)
			set = append(set, fmt.Sprintf("%s %d %s %s %v %s %v %v %v", f, r.UID, r.SHA256, r.PMInternalID, labels, normFlags(r.Flags), r.Alias, r.LabelCopy, r.Undecryptable))
		}
	}
	sort.Strings(set)
	return set
}

// Against the Proton Mail Bridge stand-in, an encrypted export (written
// without the private key: Proton IDs in clear, labels sealed) records
// exactly what a plain one does, message for message, and a second run
// exports nothing.
func TestSealedBridgeExport(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	id, _ := age.GenerateX25519Identity()
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			cfg := br.Config(t, "bridge://me@proton.test@"+br.Addr)
			plain := filepath.Join(t.TempDir(), "plain")
			exportWith(t, plain, f, Options{Account: cfg, Connections: 2})
			sealed := filepath.Join(t.TempDir(), "sealed")
			sum := exportSealed(t, sealed, f, id, Options{Account: cfg, Connections: 2})
			if !sum.Bridge || sum.Messages == 0 {
				t.Fatalf("summary: %+v", sum)
			}
			want, got := recordSet(t, plain, nil), recordSet(t, sealed, id)
			if strings.Join(want, "\n") != strings.Join(got, "\n") {
				t.Fatalf("the encrypted archive records\n%s\nthe plain one\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if sum := exportSealed(t, sealed, f, id, Options{Account: cfg, Connections: 2}); sum.Messages != 0 || sum.Duplicates != 0 {
				t.Fatalf("second run: %d new, %d duplicates", sum.Messages, sum.Duplicates)
			}
			if got := recordSet(t, sealed, id); strings.Join(want, "\n") != strings.Join(got, "\n") {
				t.Fatal("the second run changed the archive")
			}
		})
	}
}
