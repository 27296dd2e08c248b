package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

type expectedPM struct {
	PMID    string   `json:"pm_id"`
	Folder  string   `json:"folder"`
	Also    []string `json:"also"`
	Labels  []string `json:"labels"`
	Starred bool     `json:"starred"`
	Undec   bool     `json:"undecryptable"`
}

// served returns, for every Proton message, the SHA-256 of the bytes the
// server sends for it, read straight from its folders.
func served(t *testing.T, cfg *account.Config) map[string]string {
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string]string{}
	for _, box := range []string{"All Mail"} {
		if _, err := c.Examine(box); err != nil {
			t.Fatal(err)
		}
		uids, err := c.UIDsAbove(0)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := c.FetchHeaderField("X-Pm-Internal-Id")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.FetchBodies(uids, func(uid uint32, r io.Reader, size int64) error {
			h := sha256.New()
			io.Copy(h, r)
			out[ids[uid]] = hex.EncodeToString(h.Sum(nil))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// placed checks that the archive at out holds every expected Proton message
// in its folder and in each of its other folders, once each, and nothing
// else: the message in no folder in "All Mail", nothing of a folder in
// excluded (archive names) anywhere. It returns the records by folder and
// Proton ID.
func placed(t testing.TB, out string, want []expectedPM, excluded []string) map[string]map[string]archive.Record {
	t.Helper()
	got := map[string]map[string]archive.Record{}
	for folder, recs := range archived(t, out) {
		got[folder] = map[string]archive.Record{}
		for _, r := range recs {
			if _, dup := got[folder][r.PMInternalID]; dup {
				t.Errorf("%s stored twice in %s", r.PMInternalID, folder)
			}
			got[folder][r.PMInternalID] = r
		}
	}
	expect := map[string]map[string]bool{}
	for _, w := range want {
		for _, f := range append([]string{w.Folder}, w.Also...) {
			if !slices.Contains(excluded, f) {
				if expect[f] == nil {
					expect[f] = map[string]bool{}
				}
				expect[f][w.PMID] = true
			}
		}
	}
	for f, ids := range expect {
		for id := range ids {
			if _, ok := got[f][id]; !ok {
				t.Errorf("%s is not in %s", id, f)
			}
		}
	}
	for f, recs := range got {
		for id := range recs {
			if !expect[f][id] {
				t.Errorf("%s is in %s, where it does not belong", id, f)
			}
		}
	}
	return got
}

// aliases counts the alias records of the archive at out.
func aliases(t testing.TB, out string) int {
	a, err := archive.Open(out, "", false, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	n := 0
	for _, f := range a.Folders() {
		recs, _ := a.Records(f)
		for _, r := range recs {
			if r.Alias {
				n++
			}
		}
	}
	return n
}

func TestBridgeExport(t *testing.T) {
	br := testmail.StartBridge(t, 40)
	dir, addr, proc := br.Dir, br.Addr, br.Proc
	var want []expectedPM
	b, _ := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url string
		format    archive.Format
	}{
		{"bridge-url", "bridge://me@proton.test@" + addr, archive.Mbox},
		{"detected-from-ID", "imap://me@proton.test@" + addr, archive.EML},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := br.Config(t, tc.url)
			out := filepath.Join(t.TempDir(), "out")
			sum := export(t, cfg, out, tc.format, 4)
			nUndec := 0
			for _, w := range want {
				if w.Undec {
					nUndec++
				}
			}
			if len(sum.Undecryptable) != nUndec {
				t.Errorf("%d undecryptable reported, want %d", len(sum.Undecryptable), nUndec)
			}
			nAlso := 0
			for _, w := range want {
				nAlso += len(w.Also)
			}
			if !sum.Bridge || sum.Messages != len(want)+nAlso || len(sum.Failed) > 0 {
				t.Fatalf("summary: bridge=%v messages=%d failed=%v; want %d messages (%d, %d of them in two folders)", sum.Bridge, sum.Messages, sum.Failed, len(want)+nAlso, len(want), nAlso)
			}
			if sum.Duplicates != 0 || sum.AllMailOnly != 1 || sum.Excluded != 0 {
				t.Errorf("first export: %d duplicates, %d in no folder, %d excluded; want 0, 1, 0", sum.Duplicates, sum.AllMailOnly, sum.Excluded)
			}
			hashes := served(t, cfg)
			got := placed(t, out, want, nil)
			if n := aliases(t, out); n != 0 {
				t.Errorf("%d alias records: a message in two folders must be stored in both", n)
			}
			stored := 0
			for _, recs := range got {
				stored += len(recs)
			}
			if sum.Messages != stored {
				t.Errorf("summary says %d messages, the archive holds %d", sum.Messages, stored)
			}
			for _, w := range want {
				r := got[w.Folder][w.PMID]
				gl, wl := append([]string{}, r.Labels...), append([]string{}, w.Labels...)
				sort.Strings(gl)
				sort.Strings(wl)
				if strings.Join(gl, ",") != strings.Join(wl, ",") {
					t.Errorf("%s labels %v, want %v", w.PMID, r.Labels, w.Labels)
				}
				if w.Starred != strings.Contains(normFlags(r.Flags), `\flagged`) {
					t.Errorf("%s flags %v, starred %v", w.PMID, r.Flags, w.Starred)
				}
				if r.Undecryptable != w.Undec {
					t.Errorf("%s undecryptable=%v in the index, want %v", w.PMID, r.Undecryptable, w.Undec)
				}
				for _, f := range append([]string{w.Folder}, w.Also...) {
					if hashes[w.PMID] != got[f][w.PMID].SHA256 {
						t.Errorf("%s in %s: archived bytes differ from what Bridge serves", w.PMID, f)
					}
				}
			}
			if sum := export(t, cfg, out, tc.format, 4); sum.Messages != 0 || sum.Duplicates != 0 {
				t.Fatalf("re-run: %d new, %d duplicates", sum.Messages, sum.Duplicates)
			}
		})
	}
	t.Run("uidvalidity-bump", func(t *testing.T) {
		// Bridge renumbers everything (repair, re-login): the next run finds
		// every message already archived and stores nothing twice.
		cfg := br.Config(t, "bridge://me@proton.test@"+addr)
		out := filepath.Join(t.TempDir(), "out")
		export(t, cfg, out, archive.Mbox, 2)
		proc.Signal(syscall.SIGUSR1)
		for i := 0; i < 100; i++ {
			if _, err := os.Stat(filepath.Join(dir, "bumped")); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		sum := export(t, cfg, out, archive.Mbox, 2)
		if sum.Messages != 0 || len(sum.Failed) != 0 {
			t.Fatalf("after the renumbering: %d new messages, failures %v", sum.Messages, sum.Failed)
		}
		if sum.Duplicates == 0 {
			t.Fatalf("the renumbering was not seen (no message matched again)")
		}
		placed(t, out, want, nil)
	})
	t.Run("labels-as-folders", func(t *testing.T) {
		cfg := br.Config(t, "bridge://me@proton.test@"+addr)
		out := filepath.Join(t.TempDir(), "out")
		exportWith(t, out, archive.Mbox, Options{Account: cfg, Labels: LabelsAsFolders})
		got := archived(t, out)
		perLabel := map[string]int{}
		for _, w := range want {
			for _, l := range w.Labels {
				perLabel[l]++
			}
		}
		total := 0
		for _, recs := range got {
			total += len(recs)
		}
		for _, l := range []string{"Important", "Travel"} {
			if len(got["Labels/"+l]) != perLabel[l] {
				t.Fatalf("Labels/%s holds %d, want %d", l, len(got["Labels/"+l]), perLabel[l])
			}
		}
		nAlso := 0
		for _, w := range want {
			nAlso += len(w.Also)
		}
		if want := len(want) + nAlso + perLabel["Important"] + perLabel["Travel"]; total != want {
			t.Fatalf("%d messages stored, want %d (each once in each of its folders, plus one copy per label)", total, want)
		}
	})
	t.Run("exclude", func(t *testing.T) {
		// A message of an excluded folder is left out wherever else Bridge
		// shows it (All Mail, Starred, Labels/...); only a message in no
		// folder goes to All Mail.
		cfg := br.Config(t, "bridge://me@proton.test@"+addr)
		var folders []string
		inSpam := 0
		for _, w := range want {
			for _, f := range append([]string{w.Folder}, w.Also...) {
				if !slices.Contains(folders, f) {
					folders = append(folders, f)
				}
			}
			if w.Folder == "Spam" {
				inSpam++
			}
		}
		if inSpam == 0 {
			t.Fatal("the stand-in has nothing in Spam")
		}
		others := func(keep ...string) []string {
			var out []string
			for _, f := range folders {
				if !slices.Contains(keep, f) {
					out = append(out, f)
				}
			}
			return out
		}
		cases := []struct {
			name             string
			include, exclude []string
			out              []string // folders that must stay empty
			excluded         int      // messages of All Mail left out
		}{
			{"exclude-Spam", nil, []string{"Spam"}, []string{"Spam"}, inSpam},
			{"folder-INBOX", []string{"INBOX"}, nil, others("INBOX"), 0}, // All Mail not selected: no pass
			{"folder-INBOX-and-All-Mail", []string{"INBOX", "All Mail"}, nil, others("INBOX", "All Mail"), -1},
		}
		for _, c := range cases {
			for _, f := range []archive.Format{archive.Mbox, archive.EML} {
				out := filepath.Join(t.TempDir(), "out")
				sum := exportWith(t, out, f, Options{Account: cfg, Include: c.include, Exclude: c.exclude})
				placed(t, out, want, c.out)
				wantExcl := c.excluded
				if wantExcl < 0 {
					// every message of All Mail but the ones in INBOX and the one in no folder
					wantExcl = 0
					for _, w := range want {
						if w.Folder != "INBOX" && w.Folder != "All Mail" && !slices.Contains(w.Also, "INBOX") {
							wantExcl++
						}
					}
				}
				if sum.Excluded != wantExcl || len(sum.Failed) != 0 {
					t.Errorf("%s %s: %d excluded (want %d), failures %v", c.name, f, sum.Excluded, wantExcl, sum.Failed)
				}
			}
		}
		// Labels/... exported as folders: no message of Spam in them either
		out := filepath.Join(t.TempDir(), "out")
		exportWith(t, out, archive.Mbox, Options{Account: cfg, Labels: LabelsAsFolders, Exclude: []string{"Spam"}})
		got := archived(t, out)
		for _, l := range []string{"Important", "Travel", "Starred"} {
			n, spam := 0, 0
			for _, w := range want {
				if slices.Contains(w.Labels, l) {
					n++
					if w.Folder == "Spam" {
						spam++
					}
				}
			}
			if l == "Starred" {
				if len(got["Starred"]) != 0 {
					t.Errorf("Starred exported as a folder")
				}
				continue
			}
			if len(got["Labels/"+l]) != n-spam {
				t.Errorf("Labels/%s holds %d, want %d (%d of its messages are in Spam)", l, len(got["Labels/"+l]), n-spam, spam)
			}
			for _, r := range got["Labels/"+l] {
				for _, w := range want {
					if w.PMID == r.PMInternalID && w.Folder == "Spam" {
						t.Errorf("Labels/%s holds %s of Spam", l, w.PMID)
					}
				}
			}
		}
	})
	t.Run("cuts", func(t *testing.T) {
		// The connection is cut (RST or FIN) at random byte counts, folder
		// passes are cut and resumed: still every message in its own
		// folders, once each, and nothing in All Mail that is in a folder.
		defer func(old time.Duration) { firstBackoff = old }(firstBackoff)
		firstBackoff = 10 * time.Millisecond
		for seed := int64(1); seed <= 4; seed++ {
			for _, f := range []archive.Format{archive.Mbox, archive.EML} {
				r := rand.New(rand.NewSource(seed))
				var mu sync.Mutex
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				p := &cutProxy{ln: ln, target: addr, n: 12, limitOf: func(int32) (int64, bool) {
					mu.Lock()
					defer mu.Unlock()
					return 200 + r.Int63n(40_000), r.Intn(2) == 0
				}}
				go p.serve()
				cfg := br.Config(t, "bridge://me@proton.test@"+ln.Addr().String())
				out := filepath.Join(t.TempDir(), "out")
				runs := 0
				for ; runs < 6; runs++ {
					a, err := archive.Open(out, f, false, "test")
					if err != nil {
						t.Fatal(err)
					}
					sum, err := Run(context.Background(), Options{Account: cfg, Archive: a, Connections: 1 + int(seed%2)*3, Log: t.Logf})
					if cerr := a.Close(); err == nil {
						err = cerr
					}
					if err == nil && len(sum.Failed) == 0 {
						break
					}
					t.Logf("seed %d %s run %d: %v %v", seed, f, runs+1, err, sum)
				}
				ln.Close()
				if runs == 6 {
					t.Fatalf("seed %d %s: no complete run in 6", seed, f)
				}
				t.Logf("seed %d %s: %d connections cut, %d runs", seed, f, min(atomic.LoadInt32(&p.cuts), p.n), runs+1)
				placed(t, out, want, nil)
			}
		}
	})
	// last: it changes the stand-in's labels
	t.Run("refresh-labels", func(t *testing.T) {
		// a message gets a label after it was archived: --refresh-flags
		// brings the label into the archive
		cfg := br.Config(t, "bridge://me@proton.test@"+addr)
		out := filepath.Join(t.TempDir(), "out")
		run := func() *Summary { return exportWith(t, out, archive.Mbox, Options{Account: cfg, RefreshFlags: true}) }
		run()
		inTwo := map[string]bool{} // a message in two folders has two records to refresh
		for _, w := range want {
			if len(w.Also) > 0 {
				inTwo[w.PMID] = true
			}
		}
		var target archive.Record
		for _, r := range archived(t, out)["Archive"] {
			if !slices.Contains(r.Labels, "Travel") && !inTwo[r.PMInternalID] {
				target = r
				break
			}
		}
		if target.UID == 0 {
			t.Fatal("no Archive message without the Travel label")
		}
		c, err := cfg.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("Archive", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		var set imap.UIDSet
		set.AddNum(imap.UID(target.UID))
		if _, err := c.Copy(set, "Labels/Travel").Wait(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		time.Sleep(time.Second) // the stand-in applies label changes asynchronously
		if sum := run(); sum.FlagsUpdated != 1 {
			t.Fatalf("labels refreshed on %d messages, want 1", sum.FlagsUpdated)
		}
		for _, r := range archived(t, out)["Archive"] {
			if r.UID == target.UID && !slices.Contains(r.Labels, "Travel") {
				t.Fatalf("labels after refresh: %v", r.Labels)
			}
		}
	})
}
