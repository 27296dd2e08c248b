package export

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"filippo.io/age"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// sinkRun copies the account into the archive at out through the engine
// (IMAPSource -> ArchiveSink); id, if set, encrypts a new archive. The
// journal path given to the engine must stay unused: the archive is its
// own record.
func sinkRun(t *testing.T, cfg *account.Config, out string, f archive.Format, id *age.X25519Identity, del bool) *engine.Summary {
	t.Helper()
	var s archive.Sealing
	if id != nil {
		s.Recipients = []age.Recipient{id.Recipient()}
	}
	a, err := archive.OpenSealed(out, f, false, "", "test", s)
	if err != nil {
		t.Fatal(err)
	}
	src := &IMAPSource{Account: cfg}
	sink := &ArchiveSink{Archive: a, Source: src}
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	sum, err := engine.Run(context.Background(), engine.Options{Source: src, Sink: sink, JournalPath: journal, Connections: 2, Delete: del, Log: t.Logf})
	if cerr := sink.Close(); err == nil {
		err = cerr
	}
	src.Close()
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("engine.Run into the archive: %v", err)
	}
	if len(sum.Failed) > 0 || len(sum.Check.Missing) > 0 {
		t.Fatalf("failed %v, missing %v", sum.Failed, sum.Check.Missing)
	}
	if _, err := os.Stat(journal); err == nil {
		t.Fatalf("the engine wrote a journal beside the archive")
	}
	return sum
}

// indexBytes returns the archive's index files and folders.json.
func indexBytes(t *testing.T, out string) map[string][]byte {
	t.Helper()
	res := map[string][]byte{}
	filepath.WalkDir(filepath.Join(out, ".mailmove"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".jsonl") || strings.HasSuffix(p, "folders.json")) {
			b, _ := os.ReadFile(p)
			res[p] = b
		}
		return nil
	})
	return res
}

func checkArchive(t *testing.T, out string, id *age.X25519Identity) {
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
	res, err := a.Check()
	if err != nil || len(res.Problems) > 0 {
		t.Fatalf("check: %v %+v", err, res)
	}
}

// The archive as an engine sink: byte for byte, with flags and dates, in
// both layouts; a re-run writes nothing (not one index byte); the archive
// passes check.
func TestArchiveSinkExactAndRerun(t *testing.T) {
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			ts := startServer(t)
			msgs := testmail.Gen(40, folders, 7)
			ts.put(t, msgs)
			out := filepath.Join(t.TempDir(), "out")
			cfg := ts.config(t, ts.addr)
			if sum := sinkRun(t, cfg, out, f, nil, false); sum.Copied != len(msgs) {
				t.Fatalf("copied %d, want %d", sum.Copied, len(msgs))
			}
			checkExact(t, out, msgs)
			checkArchive(t, out, nil)
			before := indexBytes(t, out)
			if sum := sinkRun(t, cfg, out, f, nil, false); sum.Copied != 0 || sum.FlagsUpdated != 0 {
				t.Fatalf("re-run copied %d, flags %d", sum.Copied, sum.FlagsUpdated)
			}
			after := indexBytes(t, out)
			for p, b := range before {
				if strings.HasSuffix(p, ".jsonl") && !bytes.Equal(after[p], b) {
					t.Fatalf("re-run changed %s", p)
				}
			}
			// new mail: only that is written
			more := testmail.Gen(3, []string{"Sent"}, 8)
			ts.put(t, more)
			if sum := sinkRun(t, cfg, out, f, nil, false); sum.Copied != 3 {
				t.Fatalf("third run copied %d, want 3", sum.Copied)
			}
			checkExact(t, out, append(append([]testmail.Msg{}, msgs...), more...))
			checkArchive(t, out, nil)
		})
	}
}

// Flag changes on the source become flags_update lines; a message gone
// from the source goes, with Delete, to the archive's deleted area.
func TestArchiveSinkFlagsAndDelete(t *testing.T) {
	ts := startServer(t)
	ts.put(t, testmail.Gen(10, []string{"INBOX"}, 41))
	out := filepath.Join(t.TempDir(), "out")
	cfg := ts.config(t, ts.addr)
	sinkRun(t, cfg, out, archive.Mbox, nil, false)

	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	store := func(uid imap.UID, op imap.StoreFlagsOp, f imap.Flag) {
		var set imap.UIDSet
		set.AddNum(uid)
		if err := c.Store(set, &imap.StoreFlags{Op: op, Flags: []imap.Flag{f}, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	}
	store(1, imap.StoreFlagsAdd, imap.FlagFlagged)
	store(1, imap.StoreFlagsDel, imap.FlagSeen)
	store(2, imap.StoreFlagsAdd, imap.FlagSeen)
	store(4, imap.StoreFlagsAdd, "$Work")
	if sum := sinkRun(t, cfg, out, archive.Mbox, nil, false); sum.FlagsUpdated != 3 || sum.Copied != 0 {
		t.Fatalf("flags updated on %d messages (want 3), %d new", sum.FlagsUpdated, sum.Copied)
	}
	flags := map[uint32]string{}
	for _, r := range archived(t, out)["INBOX"] {
		flags[r.UID] = normFlags(r.Flags)
	}
	if flags[1] != `$label1 \deleted \flagged` || flags[2] != `\seen` || flags[4] != `$label1 $work` {
		t.Fatalf("flags after the run: %v", flags)
	}
	if sum := sinkRun(t, cfg, out, archive.Mbox, nil, false); sum.FlagsUpdated != 0 {
		t.Fatalf("second run updated %d", sum.FlagsUpdated)
	}

	// message 3 is deleted on the source
	store(3, imap.StoreFlagsAdd, imap.FlagDeleted)
	var set imap.UIDSet
	set.AddNum(3)
	if err := c.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if sum := sinkRun(t, cfg, out, archive.Mbox, nil, false); sum.Deleted != 0 || len(archived(t, out)["INBOX"]) != 10 {
		t.Fatalf("without Delete: %d deleted, %d kept", sum.Deleted, len(archived(t, out)["INBOX"]))
	}
	if sum := sinkRun(t, cfg, out, archive.Mbox, nil, true); sum.Deleted != 1 {
		t.Fatalf("with Delete: %d deleted, want 1", sum.Deleted)
	}
	got := archived(t, out)["INBOX"]
	if len(got) != 9 {
		t.Fatalf("after Delete the folder holds %d, want 9", len(got))
	}
	for _, r := range got {
		if r.UID == 3 {
			t.Fatal("UID 3 is still in the folder")
		}
	}
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	del, err := a.DeletedRecords()
	a.Close()
	if err != nil || len(del) != 1 || del[0].UID != 3 {
		t.Fatalf("deleted area: %v %+v", err, del)
	}
	checkArchive(t, out, nil)
	if sum := sinkRun(t, cfg, out, archive.Mbox, nil, true); sum.Deleted != 0 || sum.Copied != 0 {
		t.Fatalf("re-run: %d deleted, %d copied", sum.Deleted, sum.Copied)
	}
}

// A source folder renumbered (UIDVALIDITY changed): its messages are
// fetched again but recognised by content: alias lines, no second copy.
func TestArchiveSinkUIDValidityRescan(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	for _, sealed := range []*age.X25519Identity{nil, id} {
		for _, f := range []archive.Format{archive.Mbox, archive.EML} {
			t.Run(string(f)+map[bool]string{true: "-encrypted"}[sealed != nil], func(t *testing.T) {
				ts := startServer(t)
				msgs := testmail.Gen(20, []string{"Box"}, 4)
				ts.put(t, msgs)
				out := filepath.Join(t.TempDir(), "out")
				cfg := ts.config(t, ts.addr)
				sinkRun(t, cfg, out, f, sealed, false)
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
				if sum := sinkRun(t, cfg, out, f, sealed, false); sum.Copied != 22 {
					t.Fatalf("after renumbering: %d recorded, want 22", sum.Copied)
				}
				a, err := archive.OpenReadOnly(out)
				if err != nil {
					t.Fatal(err)
				}
				if sealed != nil {
					a.SetIdentities([]age.Identity{sealed})
				}
				recs, err := a.Records("Box")
				a.Close()
				if err != nil {
					t.Fatal(err)
				}
				stored, alias := 0, 0
				for _, r := range recs {
					if r.Alias {
						alias++
					} else {
						stored++
					}
				}
				if stored != 22 || alias != 20 {
					t.Fatalf("stored %d, aliases %d; want 22 and 20", stored, alias)
				}
				checkArchive(t, out, sealed)
				if sum := sinkRun(t, cfg, out, f, sealed, false); sum.Copied != 0 {
					t.Fatalf("run after rescan copied %d", sum.Copied)
				}
			})
		}
	}
}

// An encrypted archive as the sink: no journal, nothing in clear in the
// index (no Message-ID, no flag), flag changes seen through the clear
// tags without the private key; check passes with it.
func TestArchiveSinkEncrypted(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	for _, f := range []archive.Format{archive.Mbox, archive.EML} {
		t.Run(string(f), func(t *testing.T) {
			ts := startServer(t)
			msgs := testmail.Gen(12, []string{"INBOX", "Secret Project"}, 9)
			ts.put(t, msgs)
			out := filepath.Join(t.TempDir(), "out")
			cfg := ts.config(t, ts.addr)
			if sum := sinkRun(t, cfg, out, f, id, false); sum.Copied != 12 {
				t.Fatalf("copied %d", sum.Copied)
			}
			ids := map[string]bool{}
			for _, m := range msgs {
				if i := bytes.Index(m.Raw, []byte("Message-ID: <")); i >= 0 {
					rest := m.Raw[i+len("Message-ID: <"):]
					ids[string(rest[:bytes.IndexByte(rest, '>')])] = true
				}
			}
			if len(ids) == 0 {
				t.Fatal("the test messages have no Message-ID")
			}
			for p, b := range indexBytes(t, out) {
				for mid := range ids {
					if bytes.Contains(b, []byte(mid)) {
						t.Fatalf("%s holds Message-ID %s in clear", p, mid)
					}
				}
				if bytes.Contains(b, []byte(`\\Seen`)) || bytes.Contains(b, []byte(`"flags":[`)) {
					t.Fatalf("%s holds flags in clear", p)
				}
			}
			before := indexBytes(t, out)
			if sum := sinkRun(t, cfg, out, f, id, false); sum.Copied != 0 || sum.FlagsUpdated != 0 {
				t.Fatalf("re-run copied %d, flags %d", sum.Copied, sum.FlagsUpdated)
			}
			for p, b := range indexBytes(t, out) {
				if strings.HasSuffix(p, ".jsonl") && !bytes.Equal(before[p], b) {
					t.Fatalf("re-run changed %s", p)
				}
			}
			c, err := cfg.Dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			sel, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				t.Fatal(err)
			}
			var set imap.UIDSet
			set.AddNum(2)
			if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{"$Work"}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if sum := sinkRun(t, cfg, out, f, id, false); sum.FlagsUpdated != 1 {
				t.Fatalf("flags updated on %d, want 1", sum.FlagsUpdated)
			}
			if sum := sinkRun(t, cfg, out, f, id, false); sum.FlagsUpdated != 0 {
				t.Fatalf("second run updated %d", sum.FlagsUpdated)
			}
			var got []string
			for _, r := range sealedRecords(t, out, "INBOX", id) {
				if r.UIDValidity == sel.UIDValidity && r.UID == 2 {
					got = append(got, r.Flags...)
				}
			}
			sort.Strings(got)
			if !strings.Contains(strings.ToLower(strings.Join(got, " ")), "$work") {
				t.Fatalf("flags of UID 2: %v", got)
			}
			checkArchive(t, out, id)
		})
	}
}

// openCounter counts the folders the engine opens on the source.
type openCounter struct {
	*IMAPSource
	opens atomic.Int32
}

func (o *openCounter) Open(ctx context.Context, f *engine.Folder) (engine.FolderReader, error) {
	o.opens.Add(1)
	return o.IMAPSource.Open(ctx, f)
}

// Dovecot (CONDSTORE) into an archive: a no-op re-run opens no folder at
// all (the listing's STATUS says nothing moved); a flag changed in one
// folder opens that folder alone, and the change is recorded.
func TestArchiveSinkNoOpOpensNothing(t *testing.T) {
	d := testmail.StartDovecot(t)
	cfg := d.Config(t, "imaps", "src")
	testmail.Put(t, cfg, testmail.Gen(30, []string{"INBOX", "Sent", "Archive/2024"}, 13))
	out := filepath.Join(t.TempDir(), "out")
	run := func() (*engine.Summary, int32) {
		t.Helper()
		a, err := archive.Open(out, archive.EML, false, "test")
		if err != nil {
			t.Fatal(err)
		}
		src := &openCounter{IMAPSource: &IMAPSource{Account: cfg}}
		sink := &ArchiveSink{Archive: a, Source: src}
		sum, err := engine.Run(context.Background(), engine.Options{Source: src, Sink: sink, Log: t.Logf})
		if cerr := sink.Close(); err == nil {
			err = cerr
		}
		src.Close()
		if cerr := a.Close(); err == nil {
			err = cerr
		}
		if err != nil || len(sum.Failed) > 0 || len(sum.Check.Missing) > 0 {
			t.Fatalf("run: %v %+v", err, sum)
		}
		return sum, src.opens.Load()
	}
	if sum, _ := run(); sum.Copied != 30 {
		t.Fatalf("copied %d", sum.Copied)
	}
	if sum, opens := run(); sum.Copied != 0 || opens != 0 || sum.Check.Unchanged != len(sum.Folders) {
		t.Fatalf("no-op run: copied %d, %d folders opened, %d of %d unchanged", sum.Copied, opens, sum.Check.Unchanged, len(sum.Folders))
	}
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var set imap.UIDSet
	set.AddNum(1)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	if sum, opens := run(); sum.FlagsUpdated != 1 || opens != 1 {
		t.Fatalf("one flag changed: %d updated, %d folders opened", sum.FlagsUpdated, opens)
	}
	for _, r := range archived(t, out)["Sent"] {
		if r.UID == 1 && !strings.Contains(normFlags(r.Flags), `\answered`) {
			t.Fatalf("flags of Sent UID 1: %v", r.Flags)
		}
	}
}

// A message the source refuses to deliver (a NO to its FETCH) is asked for
// alone, then reported with the server's words; the others are copied,
// the run goes on (no reconnecting), and the next run tries it again.
func TestArchiveSinkUndeliverableReported(t *testing.T) {
	t.Run("meta", func(t *testing.T) {
		testUndeliverable(t, func(s imapserver.Session) imapserver.Session { return &flakySession{Session: s, bad: 7} })
	})
	t.Run("body", func(t *testing.T) {
		testUndeliverable(t, func(s imapserver.Session) imapserver.Session {
			return &bodyFlakySession{flakySession{Session: s, bad: 7}}
		})
	})
}

// bodyFlakySession describes every message but refuses the body of one.
type bodyFlakySession struct{ flakySession }

func (s *bodyFlakySession) Fetch(w *imapserver.FetchWriter, set imap.NumSet, o *imap.FetchOptions) error {
	whole := false
	for _, b := range o.BodySection {
		whole = whole || (b.Specifier == imap.PartSpecifierNone && len(b.HeaderFields) == 0)
	}
	if whole {
		return s.flakySession.Fetch(w, set, o)
	}
	return s.Session.Fetch(w, set, o)
}

func testUndeliverable(t *testing.T, wrap func(imapserver.Session) imapserver.Session) {
	srv, err := account.ServeMemoryWrapped("alice", "secret", nil, imap.CapSet{imap.CapIMAP4rev1: {}}, wrap)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := &testServer{srv: srv, addr: srv.Addr}
	ts.put(t, testmail.Gen(30, []string{"INBOX", "Sent"}, 21))
	out := filepath.Join(t.TempDir(), "out")
	run := func() *engine.Summary {
		t.Helper()
		a, err := archive.Open(out, archive.Mbox, false, "test")
		if err != nil {
			t.Fatal(err)
		}
		src := &IMAPSource{Account: ts.config(t, ts.addr)}
		sink := &ArchiveSink{Archive: a, Source: src}
		sum, err := engine.Run(context.Background(), engine.Options{Source: src, Sink: sink, Connections: 2, Log: t.Logf})
		if cerr := sink.Close(); err == nil {
			err = cerr
		}
		src.Close()
		if cerr := a.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		return sum
	}
	sum := run()
	if len(sum.Failed) != 1 || sum.Failed[0].Folder != "INBOX" || sum.Failed[0].UID != 7 || !strings.Contains(sum.Failed[0].Error, "temporarily unavailable") {
		t.Fatalf("failures: %+v", sum.Failed)
	}
	if sum.Copied != 29 || len(archived(t, out)["INBOX"])+len(archived(t, out)["Sent"]) != 29 {
		t.Fatalf("%d copied, want 29", sum.Copied)
	}
	a, _ := archive.Open(out, "", false, "test")
	st := a.State("INBOX")
	a.Close()
	if len(st.Failed) != 1 || st.Failed[0] != 7 {
		t.Fatalf("state failed UIDs %v", st.Failed)
	}
	if sum := run(); len(sum.Failed) != 1 || sum.Copied != 0 {
		t.Fatalf("second run: %d copied, failures %+v", sum.Copied, sum.Failed)
	}
}

// Bridge, exported twice with nothing new: the second run opens no folder,
// All Mail included (its messages in no folder cannot have changed when no
// folder did), and writes nothing.
func TestBridgeNoOpRun(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	cfg := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	out := filepath.Join(t.TempDir(), "out")
	if sum := exportWith(t, out, archive.EML, Options{Account: cfg}); sum.Messages == 0 || sum.AllMailOnly == 0 {
		t.Fatalf("first run: %+v", sum)
	}
	before := indexBytes(t, out)
	sum := exportWith(t, out, archive.EML, Options{Account: cfg})
	if sum.Messages != 0 || sum.Examined != 0 || len(sum.Failed) != 0 {
		t.Fatalf("no-op run: %d messages, %d of %d folders examined, failures %v", sum.Messages, sum.Examined, sum.Folders, sum.Failed)
	}
	for p, b := range indexBytes(t, out) {
		if strings.HasSuffix(p, ".jsonl") && !bytes.Equal(before[p], b) {
			t.Fatalf("the no-op run changed %s", p)
		}
	}
}

// shortSearchSession answers every UID SEARCH with its last UID left out
// while short is set: a listing shorter than the folder's count.
type shortSearchSession struct {
	imapserver.Session
	short *atomic.Bool
}

func (s *shortSearchSession) Search(kind imapserver.NumKind, c *imap.SearchCriteria, o *imap.SearchOptions) (*imap.SearchData, error) {
	sd, err := s.Session.Search(kind, c, o)
	if err != nil || !s.short.Load() || kind != imapserver.NumKindUID {
		return sd, err
	}
	all := sd.AllUIDs()
	if len(all) == 0 {
		return sd, nil
	}
	var set imap.UIDSet
	for _, u := range all[:len(all)-1] {
		set.AddNum(u)
	}
	return &imap.SearchData{All: set, Count: uint32(len(all) - 1)}, nil
}

// With Delete (export --mirror), a listing shorter than the folder's count
// moves nothing to the deleted area; the next full listing does what is due.
func TestArchiveSinkDeleteNotOnAShortListing(t *testing.T) {
	var short atomic.Bool
	srv, err := account.ServeMemoryWrapped("alice", "secret", nil, imap.CapSet{imap.CapIMAP4rev1: {}},
		func(s imapserver.Session) imapserver.Session { return &shortSearchSession{Session: s, short: &short} })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := &testServer{srv: srv, addr: srv.Addr}
	ts.put(t, testmail.Gen(10, []string{"INBOX"}, 17))
	out := filepath.Join(t.TempDir(), "out")
	cfg := ts.config(t, ts.addr)
	if sum := exportWith(t, out, archive.EML, Options{Account: cfg, Mirror: true}); sum.Messages != 10 {
		t.Fatalf("first run: %d", sum.Messages)
	}
	// one message is deleted on the server, and the listing comes short
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(3)).Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	short.Store(true)
	if sum := exportWith(t, out, archive.EML, Options{Account: cfg, Mirror: true}); sum.Mirrored != 0 || len(archived(t, out)["INBOX"]) != 10 {
		t.Fatalf("short listing: %d moved, %d kept", sum.Mirrored, len(archived(t, out)["INBOX"]))
	}
	short.Store(false)
	if sum := exportWith(t, out, archive.EML, Options{Account: cfg, Mirror: true}); sum.Mirrored != 1 || len(archived(t, out)["INBOX"]) != 9 {
		t.Fatalf("full listing: %d moved, %d kept", sum.Mirrored, len(archived(t, out)["INBOX"]))
	}
}
