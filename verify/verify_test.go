package verify

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/imports"
	"github.com/mailmove/mailmove/internal/testmail"
)

// exportTo exports the account into a new archive of the format.
func exportTo(t *testing.T, cfg *account.Config, format archive.Format) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "archive")
	a, err := archive.Open(out, format, format == archive.Mbox, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := export.Run(context.Background(), export.Options{Account: cfg, Archive: a}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mustClean compares a and b and fails unless everything is there.
func mustClean(t *testing.T, a, b Side, o Options) *Report {
	t.Helper()
	r, err := Compare(context.Background(), a, b, o)
	if err != nil {
		t.Fatalf("%s -> %s: %v", a, b, err)
	}
	if !r.OK() || r.Messages == 0 || r.Messages != r.TargetMessages || r.Matched != r.Messages {
		t.Fatalf("%s -> %s (deep %v, flags %v): not clean: %s\n%+v", a, b, o.Deep, o.Flags, r.Summary(), r)
	}
	return r
}

func ids(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.MessageID)
	}
	slices.Sort(out)
	return out
}

func diffs(r *Report, what string) []string {
	var out []string
	for _, f := range r.Folders {
		for _, d := range f.Different {
			if d.What == what {
				out = append(out, d.From.MessageID)
			}
		}
	}
	slices.Sort(out)
	return out
}

func all(r *Report, missing bool) []string {
	var out []string
	for _, f := range r.Folders {
		if missing {
			out = append(out, ids(f.Missing)...)
		} else {
			out = append(out, ids(f.Extra)...)
		}
	}
	slices.Sort(out)
	return out
}

// uidOf returns the UID of the message with Message-ID id in the folder,
// which it leaves selected (read-write).
func uidOf(t *testing.T, c *account.Conn, folder, id string) (imap.UID, []byte, []imap.Flag, time.Time) {
	t.Helper()
	if _, err := c.Select(folder, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var all imap.UIDSet
	all.AddRange(1, 0)
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		flags := slices.DeleteFunc(m.Flags, func(f imap.Flag) bool { return f == `\Recent` })
		for _, bs := range m.BodySection {
			if bytes.Contains(bs.Bytes, []byte("Message-ID: <"+id+">")) {
				return m.UID, bs.Bytes, flags, m.InternalDate
			}
		}
	}
	t.Fatalf("no %s in %s", id, folder)
	return 0, nil, nil, time.Time{}
}

func expunge(t *testing.T, c *account.Conn, uid imap.UID) {
	t.Helper()
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(imap.UIDSetNum(uid)).Close(); err != nil {
		t.Fatal(err)
	}
}

// Dovecot -> archive (mbox and eml) verifies clean both ways; the archive
// imported into a second user verifies clean against the first; then a
// message deleted, one altered (same size, one byte: --deep only), one
// extra and one flag changed on the target are each found and named.
func TestDovecot(t *testing.T) {
	ctx := context.Background()
	d := testmail.StartDovecot(t)
	src, dst := d.Config(t, "imaps", "src"), d.Config(t, "imaps", "dst")
	testmail.Put(t, src, testmail.Corpus())
	var arch string
	for _, format := range []archive.Format{archive.Mbox, archive.EML} {
		out := exportTo(t, src, format)
		for _, o := range []Options{{}, {Deep: true, Flags: true}} {
			r := mustClean(t, Side{Account: src}, Side{Path: out}, o)
			n := 0
			for _, f := range r.Folders {
				if f.Messages > 0 {
					n++
				}
			}
			if n != 7 {
				t.Errorf("%d folders with messages compared, want 7: %+v", n, r.Folders)
			}
			mustClean(t, Side{Path: out}, Side{Account: src}, o)
		}
		arch = out
	}
	if _, err := imports.Run(ctx, imports.Options{Account: dst, Source: arch, JournalDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	deepFlags := Options{Deep: true, Flags: true}
	mustClean(t, Side{Account: src}, Side{Account: dst}, deepFlags)
	mustClean(t, Side{Path: arch}, Side{Account: dst}, deepFlags)

	// Changes on the target, in Sent (Gen puts messages 8, 15, 22 there).
	c, err := dst.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gone, altered, flagged := "m11.8@example.org", "m11.15@example.org", "m11.22@example.org"
	uid, goneRaw, goneFlags, goneDate := uidOf(t, c, "Sent", gone)
	goneRaw = bytes.Clone(goneRaw)
	expunge(t, c, uid)
	uid, raw, flags, date := uidOf(t, c, "Sent", altered)
	i := bytes.Index(raw, []byte("From the start of a body line"))
	if i < 0 {
		t.Fatal("no body line to alter")
	}
	raw = bytes.Clone(raw)
	raw[i+5] = 'T' // "From The start": one byte, same size
	expunge(t, c, uid)
	testmail.Put(t, dst, []testmail.Msg{
		{Folder: "Sent", Raw: raw, Flags: flags, Date: date},
		{Folder: "Sent", Raw: []byte("From: x@example.org\r\nSubject: extra\r\nMessage-ID: <extra@example.org>\r\nDate: Mon, 06 Jan 2025 09:15:00 +0100\r\n\r\nextra\r\n"), Date: date},
	})
	uid, _, _, _ = uidOf(t, c, "Sent", flagged)
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}

	check := func(o Options, wantContent, wantFlags []string) {
		t.Helper()
		for _, from := range []Side{{Account: src}, {Path: arch}} {
			r, err := Compare(ctx, from, Side{Account: dst}, o)
			if err != nil {
				t.Fatal(err)
			}
			if !r.Differs() || r.OK() {
				t.Errorf("%+v: no difference found: %s", o, r.Summary())
			}
			if got := all(r, true); !slices.Equal(got, []string{gone}) {
				t.Errorf("%+v from %s: missing %v, want %s", o, from, got, gone)
			}
			if got := all(r, false); !slices.Equal(got, []string{"extra@example.org"}) {
				t.Errorf("%+v: extra %v", o, got)
			}
			if got := diffs(r, "content"); !slices.Equal(got, wantContent) {
				t.Errorf("%+v: different content %v, want %v", o, got, wantContent)
			}
			if got := diffs(r, "flags"); !slices.Equal(got, wantFlags) {
				t.Errorf("%+v: different flags %v, want %v", o, got, wantFlags)
			}
			if r.Missing != 1 || r.Extra != 1 || r.Different != len(wantContent)+len(wantFlags) {
				t.Errorf("%+v: counts %s", o, r.Summary())
			}
			// reported messages are described: subject, Date header,
			// where a local side holds them (file and place)
			headerDate := time.Date(2025, 1, 6, 9, 15, 0, 0, time.FixedZone("", 3600))
			for _, f := range r.Folders {
				for _, e := range f.Missing {
					if e.Subject != "message 8" || (from.Path != "") != (e.Source != "") || (from.Path == "") != (e.UID != 0) {
						t.Errorf("missing message described as %+v", e)
					}
				}
				for _, e := range f.Extra {
					if e.Subject != "extra" || !e.Date.Equal(headerDate) || e.UID == 0 {
						t.Errorf("extra message described as %+v", e)
					}
				}
			}
		}
	}
	check(Options{}, nil, nil)
	check(Options{Deep: true}, []string{altered}, nil)
	check(Options{Flags: true}, nil, []string{flagged})
	check(Options{Deep: true, Flags: true}, []string{altered}, []string{flagged})

	// the deleted message back: only the extra one is left (cheaply);
	// AllowExtra lists it without counting it as a difference
	testmail.Put(t, dst, []testmail.Msg{{Folder: "Sent", Raw: goneRaw, Flags: goneFlags, Date: goneDate}})
	for _, allow := range []bool{false, true} {
		r, err := Compare(ctx, Side{Account: src}, Side{Account: dst}, Options{AllowExtra: allow})
		if err != nil {
			t.Fatal(err)
		}
		if r.Extra != 1 || r.Missing != 0 || r.Different != 0 || r.Differs() == allow || r.OK() != allow {
			t.Errorf("allow extra %v: %s", allow, r.Summary())
		}
	}
}

// The Bridge stand-in verifies clean against its export (each Proton
// message once in each of its folders, All-Mail-only messages in All Mail,
// labels not folders), with --deep and --flags, and against Dovecot after
// the archive was imported there.
func TestBridge(t *testing.T) {
	ctx := context.Background()
	br := testmail.StartBridge(t, 40)
	src := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	var last string
	for _, format := range []archive.Format{archive.Mbox, archive.EML} {
		out := exportTo(t, src, format)
		r := mustClean(t, Side{Account: src}, Side{Path: out}, Options{Deep: true, Flags: true})
		names := map[string]bool{}
		for _, f := range r.Folders {
			names[f.Folder] = true
			if strings.HasPrefix(f.Folder, "Labels/") || strings.HasPrefix(f.Folder, "Folders/") || f.Folder == "Starred" {
				t.Errorf("folder %s compared: not an archive folder of a Bridge export", f.Folder)
			}
		}
		if !names["All Mail"] || !names["INBOX"] {
			t.Errorf("folders compared: %v", names)
		}
		mustClean(t, Side{Account: src}, Side{Path: out}, Options{})
		if format == archive.EML {
			d := testmail.StartDovecot(t)
			dst := d.Config(t, "imaps", "dst")
			if _, err := imports.Run(ctx, imports.Options{Account: dst, Source: out, JournalDir: t.TempDir()}); err != nil {
				t.Fatal(err)
			}
			mustClean(t, Side{Account: src}, Side{Account: dst}, Options{Deep: true, Flags: true})
		}
		last = out
	}
	// a label added on Bridge (pm-0008 is in INBOX, not Important): --flags
	// names it, the cheap comparison does not mind
	c, err := src.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	ids, err := c.FetchHeaderField("X-Pm-Internal-Id")
	if err != nil {
		t.Fatal(err)
	}
	var uid uint32
	for u, id := range ids {
		if strings.HasPrefix(id, "pm-0008-") {
			uid = u
		}
	}
	if _, err := c.Copy(imap.UIDSetNum(imap.UID(uid)), "Labels/Important").Wait(); uid == 0 || err != nil {
		t.Fatalf("labelling UID %d: %v", uid, err)
	}
	mustClean(t, Side{Account: src}, Side{Path: last}, Options{Deep: true})
	// on the caller's connection, which stays open
	r, err := Compare(ctx, Side{Account: src, Conn: c}, Side{Path: last}, Options{Flags: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("the caller's connection after Compare: %v", err)
	}
	if r.Different != 1 || !r.Differs() {
		t.Fatalf("label added: %s", r.Summary())
	}
	for _, f := range r.Folders {
		for _, d := range f.Different {
			if f.Folder != "INBOX" || d.What != "flags" || !slices.Contains(d.From.Labels, "Important") || slices.Contains(d.To.Labels, "Important") {
				t.Errorf("difference: %s %+v", f.Folder, d)
			}
		}
	}
}

// A message without Message-ID is keyed by its content; X-Pm-* fields are
// left out of the hash, line endings normalised.
func TestHash(t *testing.T) {
	a := "From: a\r\nX-Pm-Gluon-Id: 1\r\n folded\r\nSubject: s\r\n\r\nbody\r\nX-Pm-Gluon-Id: in the body\r\n"
	b := "From: a\nx-pm-gluon-id: 2\nSubject: s\n\nbody\nX-Pm-Gluon-Id: in the body\n"
	ha, na, err := hashMessage(nopCloser(a))
	if err != nil {
		t.Fatal(err)
	}
	hb, nb, _ := hashMessage(nopCloser(b))
	if ha != hb {
		t.Errorf("hashes differ: %s %s", ha, hb)
	}
	if na != int64(len(a)) || nb != int64(len(b))+6 {
		t.Errorf("sizes %d %d", na, nb)
	}
	hc, _, _ := hashMessage(nopCloser(strings.Replace(a, "in the body", "in the bodY", 1)))
	if hc == ha {
		t.Error("a body change left the hash alone")
	}
	// foreign local input (an mbox file) is compared by its CRLF size
	dir := t.TempDir()
	mb := filepath.Join(dir, "in.mbox")
	os.WriteFile(mb, []byte("From x Mon Jan  6 09:15:00 2025\nFrom: a\nMessage-ID: <q@x>\n\nhi\n\nFrom x Mon Jan  6 09:15:00 2025\nFrom: b\n\nno id\n"), 0o600)
	r, err := Compare(context.Background(), Side{Path: mb}, Side{Path: mb}, Options{Deep: true})
	if err != nil || !r.OK() || r.Messages != 2 {
		t.Fatalf("%v %+v", err, r)
	}
}

type strReader struct{ *strings.Reader }

func (strReader) Close() error { return nil }

func nopCloser(s string) strReader { return strReader{strings.NewReader(s)} }

// Foreign local input (a folder of .eml files, a Maildir, mbox files),
// read as import reads it, verifies clean against the account it was
// imported into, cheap and deep, flags included.
func TestForeignInput(t *testing.T) {
	ctx := context.Background()
	d := testmail.StartDovecot(t)
	root := filepath.Join(testmail.Root(), "testdata", "import")
	for i, in := range []string{"TutaExport-2026-11-20", "maildir", "python-mboxo.mbox", "mboxrd-crlf.mbox", "thunderbird"} {
		src := filepath.Join(root, in)
		prefix := fmt.Sprintf("In%d", i)
		dst := d.Config(t, "imaps", "dst")
		sum, err := imports.Run(ctx, imports.Options{Account: dst, Source: src, Prefix: prefix, JournalDir: t.TempDir()})
		if err != nil || len(sum.Failed) > 0 {
			t.Fatalf("%s: import: %v %+v", in, err, sum)
		}
		for _, o := range []Options{{Prefix: prefix}, {Prefix: prefix, Deep: true, Flags: true}} {
			r := mustClean(t, Side{Path: src}, Side{Account: dst}, o)
			if r.Messages != sum.Seen {
				t.Errorf("%s: %d messages compared, import saw %d", in, r.Messages, sum.Seen)
			}
		}
		// against folders the account does not have: every message is
		// missing, and each is named by where the input holds it, with
		// the subject its header gives
		r, err := Compare(ctx, Side{Path: src}, Side{Account: dst}, Options{Prefix: "Nowhere"})
		if err != nil {
			t.Fatal(err)
		}
		subjects := 0
		for _, f := range r.Folders {
			for _, e := range f.Missing {
				if e.Source == "" {
					t.Errorf("%s: missing %s has no place: %+v", in, e.MessageID, e)
				}
				if e.Subject != "" {
					subjects++
				}
			}
		}
		if r.Missing != sum.Seen || subjects == 0 {
			t.Errorf("%s: %d missing (want %d), %d with a subject", in, r.Missing, sum.Seen, subjects)
		}
	}
}

// Into Proton Mail Bridge: an archive imported into the stand-in verifies
// by Message-ID alone (Bridge rebuilds messages), through Bridge's target
// rules (user folders under Folders/); the stand-in's own messages are
// extra.
func TestBridgeTarget(t *testing.T) {
	ctx := context.Background()
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, testmail.Gen(30, []string{"INBOX", "Sent", "Projects/2024"}, 9))
	arch := exportTo(t, src, archive.EML)
	br := testmail.StartBridge(t, 8)
	dst := br.Config(t, "bridge://me@proton.test@"+br.Addr)
	if _, err := imports.Run(ctx, imports.Options{Account: dst, Source: arch, JournalDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{{AllowExtra: true}, {AllowExtra: true, Deep: true, Flags: true}} {
		r, err := Compare(ctx, Side{Path: arch}, Side{Account: dst}, o)
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() || r.Messages != 30 || r.Matched != 30 || r.Extra == 0 || len(r.Notes) == 0 {
			t.Fatalf("%+v: %s %+v", o, r.Summary(), r)
		}
		names := map[string]bool{}
		for _, f := range r.Folders {
			names[f.Folder] = true
		}
		if !names["Folders/Projects/2024"] || !names["Sent"] {
			t.Errorf("target folders: %v", names)
		}
	}
}

// An import into one target folder (import --folder) verifies with Into:
// every source folder against that folder; without it, the messages are
// missing from the folders of their own names.
func TestInto(t *testing.T) {
	ctx := context.Background()
	d := testmail.StartDovecot(t)
	src := d.Config(t, "imaps", "src")
	testmail.Put(t, src, testmail.Gen(12, []string{"INBOX", "Sent", "Projects/2024"}, 21))
	arch := exportTo(t, src, archive.EML)
	dst := d.Config(t, "imaps", "dst")
	if _, err := imports.Run(ctx, imports.Options{Account: dst, Source: arch, Folder: "Old mail", JournalDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	for _, from := range []Side{{Account: src}, {Path: arch}} {
		r := mustClean(t, from, Side{Account: dst}, Options{Into: "Old mail", Deep: true})
		if len(r.Folders) != 1 || r.Folders[0].Folder != "Old mail" || len(r.Folders[0].From) < 3 {
			t.Errorf("%s: folders %+v, want every source folder in Old mail", from, r.Folders)
		}
		r, err := Compare(ctx, from, Side{Account: dst}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Missing != 12 || !r.Differs() {
			t.Errorf("%s without Into: %s", from, r.Summary())
		}
	}
}
