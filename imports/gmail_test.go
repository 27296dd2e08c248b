package imports

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/gmailstub"
	"github.com/mailmove/mailmove/internal/testmail"
)

// gmailSource is a Gmail stand-in with messages of every kind, exported
// the Gmail way into an archive.
func gmailSource(t *testing.T) (*gmailstub.Server, string) {
	s := gmailstub.StartT(t, gmailstub.Options{})
	d := time.Date(2025, 4, 7, 10, 0, 0, 0, time.UTC)
	m1 := s.Add(gmailstub.Mail("m1@x", "inbox work important", 300), d, 0, []string{`\Inbox`, "Work", `\Important`}, `\Seen`)
	s.Add(gmailstub.Mail("m2@x", "sent work", 400), d, 0, []string{`\Sent`, "Work"}, `\Seen`)
	s.Add(gmailstub.Mail("m3@x", "two labels", 500), d, 0, []string{"Zeta", "Büro", "Alpha/Beta"})
	s.Add(gmailstub.Mail("m4@x", "archived", 600), d, 0, nil, `\Seen`)
	s.Add(gmailstub.Mail("m5@x", "spam", 700), d, 0, []string{`\Spam`})
	s.Add(gmailstub.Mail("m6@x", "trash", 800), d, 0, []string{`\Trash`, "Work"})
	s.Add(gmailstub.Mail("m7@x", "draft", 900), d, 0, []string{`\Draft`})
	s.Add(gmailstub.Mail("m8@x", "reply in thread", 1000), d, m1, []string{`\Inbox`, `\Starred`})
	out := exportTo(t, s.Config(t), archive.EML)
	return s, out
}

// labelsByMessageID describes a Gmail store: Message-ID -> sorted labels
// and flags.
func labelsByMessageID(t *testing.T, s *gmailstub.Server) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range s.Messages() {
		var ls []string
		for l := range m.Labels {
			ls = append(ls, l)
		}
		for f := range m.Flags {
			ls = append(ls, "flag:"+f)
		}
		sort.Strings(ls)
		id := string(m.Body[strings.Index(string(m.Body), "Message-ID: <")+13:])
		id = id[:strings.IndexByte(id, '>')]
		if _, dup := out[id]; dup {
			t.Fatalf("%s held twice", id)
		}
		out[id] = strings.Join(ls, " ")
	}
	return out
}

// TestGmailToGmail: a Gmail archive into another Gmail account (with
// German names): one APPEND per message into the folder of its special
// use, then its other labels with one UID STORE +X-GM-LABELS; the labels
// and flags on the target equal the source's.
func TestGmailToGmail(t *testing.T) {
	src, out := gmailSource(t)
	dst := gmailstub.StartT(t, gmailstub.Options{Names: gmailstub.German})
	sum := runImport(t, Options{Account: dst.Config(t), Source: out})
	if !sum.Gmail || len(sum.Failed) != 0 || sum.Appended != 8 {
		t.Fatalf("gmail=%v appended %d, failures %v", sum.Gmail, sum.Appended, sum.Failed)
	}
	st := dst.Stats()
	if st.Appends != 8 {
		t.Errorf("%d APPENDs, want 8 (one per message)", st.Appends)
	}
	// m1 (Work, \Important), m2 (Work), m3 (Zeta), m6 (Work) need labels
	if st.LabelStores != 4 {
		t.Errorf("%d UID STORE +X-GM-LABELS, want 4", st.LabelStores)
	}
	want, got := labelsByMessageID(t, src), labelsByMessageID(t, dst)
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: labels and flags %q, want %q", id, got[id], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d messages on the target, want %d", len(got), len(want))
	}
	// a re-run appends nothing
	if s := runImport(t, Options{Account: dst.Config(t), Source: out}); s.Appended != 0 || dst.Stats().Appends != 8 {
		t.Fatalf("re-run: appended %d (%d APPENDs)", s.Appended, dst.Stats().Appends)
	}
}

// TestGmailArchiveToOther: into a server that is not Gmail, a Gmail
// archive's labels become keywords on the one copy, or folder copies with
// --labels folders.
func TestGmailArchiveToOther(t *testing.T) {
	_, out := gmailSource(t)
	for _, asFolders := range []bool{false, true} {
		srv := testmail.Mem(t)
		cfg := testmail.MemConfig(t, srv.Addr)
		sum := runImport(t, Options{Account: cfg, Source: out, LabelsAsFolders: asFolders})
		if len(sum.Failed) != 0 {
			t.Fatalf("failures %v", sum.Failed)
		}
		held := testmail.Held(t, cfg)
		where := map[string][]string{}
		kw := map[string][]string{}
		for f, msgs := range held {
			for _, m := range msgs {
				id := string(m.Raw[strings.Index(string(m.Raw), "Message-ID: <")+13:])
				id = id[:strings.IndexByte(id, '>')]
				where[id] = append(where[id], f)
				for _, fl := range m.Flags {
					kw[id+" "+f] = append(kw[id+" "+f], string(fl))
				}
			}
		}
		if asFolders {
			sort.Strings(where["m1@x"])
			sort.Strings(where["m3@x"])
			if !slices.Equal(where["m1@x"], []string{"INBOX", "Work"}) || !slices.Equal(where["m3@x"], []string{"Alpha/Beta", "Büro", "Zeta"}) {
				t.Errorf("--labels folders: m1 in %v, m3 in %v", where["m1@x"], where["m3@x"])
			}
			continue
		}
		if len(where["m1@x"]) != 1 || len(where["m3@x"]) != 1 {
			t.Errorf("keywords: m1 in %v, m3 in %v", where["m1@x"], where["m3@x"])
		}
		// (go-imap's in-memory server keeps keywords in lower case)
		if k := kw["m1@x INBOX"]; !slices.ContainsFunc(k, eqFold("Work")) || !slices.ContainsFunc(k, eqFold("$Important")) {
			t.Errorf("m1's keywords %v", k)
		}
		if k := kw["m3@x Alpha/Beta"]; !slices.ContainsFunc(k, eqFold("Zeta")) {
			t.Errorf("m3's keywords %v", k)
		}
	}
}

// TestGmailAppendLimit: a message over the target's APPENDLIMIT is
// reported and not sent.
func TestGmailAppendLimit(t *testing.T) {
	_, out := gmailSource(t)
	dst := gmailstub.StartT(t, gmailstub.Options{AppendLimit: 500})
	sum := runImport(t, Options{Account: dst.Config(t), Source: out})
	if sum.Appended != 1 || len(sum.Failed) != 7 {
		t.Fatalf("appended %d, failures %v; want 1 and 7", sum.Appended, sum.Failed)
	}
	for _, f := range sum.Failed {
		if !strings.Contains(f.Error, "APPENDLIMIT") {
			t.Errorf("failure %+v", f)
		}
	}
	if st := dst.Stats(); st.Appends != 1 || st.BytesAppended > 500 {
		t.Errorf("%d APPENDs, %d bytes sent", st.Appends, st.BytesAppended)
	}
}

// TestGmailUploadCap: Gmail's [OVERQUOTA] on APPEND stops the import with a
// CapError; the next day's run completes, every message once, labelled.
func TestGmailUploadCap(t *testing.T) {
	src, out := gmailSource(t)
	dst := gmailstub.StartT(t, gmailstub.Options{UploadCap: 2000})
	journal := filepath.Join(t.TempDir(), "j")
	_, err := Run(context.Background(), Options{Account: dst.Config(t), Source: out, JournalDir: journal, Connections: 1, Log: t.Logf})
	var ce *account.CapError
	if !errors.As(err, &ce) || ce.Direction != "upload" {
		t.Fatalf("want an upload CapError, got %v", err)
	}
	first := dst.Stats().Appends
	if first == 0 || first >= 8 {
		t.Fatalf("%d messages appended before the cap", first)
	}
	dst.SetCaps(0, 0)
	sum := runImport(t, Options{Account: dst.Config(t), Source: out, JournalDir: journal})
	if len(sum.Failed) != 0 || first+sum.Appended != 8 {
		t.Fatalf("re-run appended %d after %d, failures %v", sum.Appended, first, sum.Failed)
	}
	want, got := labelsByMessageID(t, src), labelsByMessageID(t, dst)
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: labels and flags %q, want %q", id, got[id], w)
		}
	}
}

func eqFold(s string) func(string) bool {
	return func(x string) bool { return strings.EqualFold(x, s) }
}

// TestMaxBytesPerDayBatches: --max-bytes-per-day holds for the batched
// appends (MULTIAPPEND, Dovecot) too: the run stops before the budget, and
// the next one appends the rest, nothing twice.
func TestMaxBytesPerDayBatches(t *testing.T) {
	src := testmail.Mem(t)
	testmail.Put(t, testmail.MemConfig(t, src.Addr), testmail.Gen(30, []string{"INBOX", "Sent"}, 11))
	out := exportTo(t, testmail.MemConfig(t, src.Addr), archive.EML)
	d := testmail.StartDovecot(t)
	dst := d.Config(t, "imaps", "dst")
	var total int64
	a, err := archive.OpenReadOnly(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range a.Folders() {
		recs, _ := a.Records(f)
		for _, r := range recs {
			total += r.Size
		}
	}
	a.Close()
	b, err := account.NewDailyBudget(t.TempDir(), dst.URL.String(), "upload", total/2)
	if err != nil {
		t.Fatal(err)
	}
	jdir := t.TempDir()
	sum, err := Run(context.Background(), Options{Account: dst, Source: out, JournalDir: jdir, Budget: b, Log: t.Logf})
	var ce *account.CapError
	if !errors.As(err, &ce) || !ce.Own {
		t.Fatalf("want an own CapError, got %v", err)
	}
	if sum.Bytes > total/2 || sum.Appended == 0 {
		t.Fatalf("%d bytes appended (%d messages) under a budget of %d", sum.Bytes, sum.Appended, total/2)
	}
	first := sum.Appended
	sum = runImport(t, Options{Account: dst, Source: out, JournalDir: jdir})
	if first+sum.Appended != 30 {
		t.Fatalf("%d + %d appended, want 30", first, sum.Appended)
	}
	n := 0
	for _, ms := range contents(t, dst) {
		n += len(ms)
	}
	if n != 30 {
		t.Fatalf("%d messages on the target, want 30", n)
	}
}
