// Package export is mailmove's copy engine for the export direction: it reads
// an IMAP account (or Proton Mail Bridge) folder by folder and writes every
// message, byte for byte and with its metadata, into an archive. Runs are
// incremental (only UIDs above the last one archived are fetched) and
// resumable: an interrupted run leaves the archive consistent, and the next
// run finishes the job without writing anything twice.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/message"
)

// LabelMode says what to do with Proton labels (Bridge's Labels/... folders).
type LabelMode string

const (
	// LabelsAsMetadata records labels in each message's metadata and does
	// not export the Labels/... folders as copies (the default).
	LabelsAsMetadata LabelMode = "metadata"
	// LabelsAsFolders exports Labels/... folders as folders of their own.
	LabelsAsFolders LabelMode = "folders"
)

// Options configure a run.
type Options struct {
	// Account is where the mail comes from.
	Account *account.Config
	// Conn, if set, is a connection to Account already logged in (the
	// command dials first, so that a failed login creates no archive);
	// Run uses it as its first connection and closes it.
	Conn *account.Conn
	// Archive is where it goes.
	Archive *archive.Archive
	// Include and Exclude are glob patterns (path.Match, "/" between
	// segments) on folder paths; empty Include means every folder.
	Include, Exclude []string
	// Connections is the most IMAP connections used at once (default 4).
	Connections int
	// Labels applies to Proton Mail Bridge accounts.
	Labels LabelMode
	// RefreshFlags compares the flags of messages already archived with the
	// server's and records the changes. It costs one FLAGS fetch per folder
	// and run, so unchanged folders are no longer skipped.
	RefreshFlags bool
	// Retries is how often a message that failed is tried again (default 3).
	Retries int
	// ChunkSize is how many messages are asked for in one UID FETCH.
	ChunkSize int
	// Mirror moves the archived messages that are gone from the server
	// (their UID is no longer in a folder whose UIDVALIDITY did not change)
	// to the archive's deleted area (archive.MoveDeleted); nothing is
	// erased. It costs one UID SEARCH per folder that changed.
	Mirror bool
	// Progress, if set, is told about progress.
	Progress Progress
	// Log, if set, receives warnings (reconnects, retries).
	Log func(format string, args ...any)
	// GmailLabels applies to Gmail accounts (X-GM-EXT-1); see gmail.go.
	GmailLabels GmailLabelMode
	// Budget, if set, is --max-bytes-per-day: the run stops with an
	// *account.CapError before a message would cross it (Gmail accounts).
	Budget *account.DailyBudget
}

// Progress receives progress reports (see message.Progress).
type Progress = message.Progress

// Failure is a message that could not be exported.
type Failure struct {
	Folder string `json:"folder"`
	UID    uint32 `json:"uid"`
	Error  string `json:"error"`
}

// Summary is what a run did.
type Summary struct {
	Folders    int   `json:"folders"`
	Messages   int   `json:"messages"`
	Bytes      int64 `json:"bytes"`
	Duplicates int   `json:"duplicates"`
	// Examined counts the folders that were opened (the others had not
	// changed since the last run).
	Examined int `json:"examined"`
	// FlagsUpdated counts archived messages whose flags changed (RefreshFlags).
	FlagsUpdated int       `json:"flags_updated,omitempty"`
	Failed       []Failure `json:"failed"`
	// Undecryptable lists messages Proton Mail Bridge could not decrypt:
	// they are archived as Bridge served them (a placeholder around the
	// encrypted data), and reported.
	Undecryptable []Failure `json:"undecryptable,omitempty"`
	Bridge        bool      `json:"bridge"`
	// Gmail is set when the account was exported the Gmail way (each
	// message once, its labels in the index; see gmail.go).
	Gmail bool `json:"gmail,omitempty"`
	// AllMailOnly counts the messages stored into the archive folder "All
	// Mail" because Bridge shows them in no folder (Bridge only; they are
	// among Messages).
	AllMailOnly int `json:"all_mail_only,omitempty"`
	// Excluded counts the messages of Bridge's All Mail (and, with
	// LabelsAsFolders, of Labels/...) left out because they are in a
	// folder that --folder/--exclude left out.
	Excluded int `json:"excluded,omitempty"`
	// BridgeSyncing is set when Bridge's All Mail count changed during the
	// run: Bridge was probably still syncing, and a later run will find more.
	BridgeSyncing bool `json:"bridge_syncing,omitempty"`
	// Mirrored counts the archived messages found deleted on the server
	// and moved to the archive's deleted area (Options.Mirror).
	Mirrored int           `json:"moved_to_deleted,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`

	mu sync.Mutex
}

func (s *Summary) add(stored bool, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if stored {
		s.Messages++
		s.Bytes += size
	} else {
		s.Duplicates++
	}
}

func (s *Summary) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Messages + s.Duplicates
}

func (s *Summary) fail(f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Failed = append(s.Failed, f)
}

// job is one folder to export.
type job struct {
	f       *account.Folder
	name    string   // archive folder name ("/"-joined)
	segs    []string // archive folder segments
	orphans bool     // Bridge All Mail: only messages in no folder
	labels  bool     // Bridge Labels/... exported as folders: copies, not deduplicated
}

// realFolder is a Bridge mailbox that is a folder (INBOX, Sent, Folders/...),
// not a view (All Mail, Starred, Labels/...), whether it is exported or not.
type realFolder struct {
	f        *account.Folder
	name     string // archive folder name
	selected bool
}

// firstBackoff is the wait before the first reconnect; tests shorten it.
var firstBackoff = time.Second

// runOld exports the account into the archive with export's own engine;
// it is left for Gmail accounts (runGmail).
func runOld(ctx context.Context, o Options) (*Summary, error) {
	start := time.Now()
	if o.Connections <= 0 {
		o.Connections = 4
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = 1000
	}
	if o.Labels == "" {
		o.Labels = LabelsAsMetadata
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	e := &exporter{o: o, sum: &Summary{}}
	first := o.Conn
	if first == nil {
		var err error
		if first, err = o.Account.Dial(ctx); err != nil {
			return nil, err
		}
	}
	e.pool = append(e.pool, first)
	defer func() {
		for _, c := range e.pool {
			c.Logout().Wait()
			c.Close()
		}
	}()
	e.bridge = o.Account.URL.Bridge || first.IsBridge()
	e.sum.Bridge = e.bridge
	folders, err := first.ListFolders()
	if err != nil {
		return nil, fmt.Errorf("listing folders: %w", err)
	}
	if !e.bridge && o.GmailLabels != GmailLabelsFolders && first.IsGmail() {
		return e.runGmail(ctx, folders, start) // gmail.go
	}
	jobs, labelBoxes, allMail, real := e.plan(folders)
	e.real = real
	e.sum.Folders = len(jobs)
	all := jobs
	if allMail != nil {
		e.sum.Folders++
		all = append(all[:len(all):len(all)], allMail)
	}

	// Skip what has not changed since the last run: same UIDVALIDITY, UIDNEXT
	// and message count, no failed UIDs to retry. Bridge's All Mail and
	// Labels/... copies wait until the folders are done: which of their
	// messages are in no folder, or in an excluded one, is known only then.
	// Each is skipped only after a pass of its own that finished.
	var todo, later []*job
	var planned int
	var plannedBytes int64
	for _, j := range all {
		st := o.Archive.State(j.name)
		s := j.f.Status
		flagsKnown := !o.RefreshFlags || (s != nil && s.HighestModSeq != 0 && s.HighestModSeq == st.ModSeq)
		mirrored := !o.Mirror || (s != nil && s.NumMessages != nil && st.MirrorUIDNext == uint32(s.UIDNext) && st.MirrorMessages == *s.NumMessages)
		if flagsKnown && mirrored && s != nil && st.UIDValidity == s.UIDValidity && uint32(s.UIDNext) == st.UIDNext && s.NumMessages != nil &&
			*s.NumMessages == st.Messages && len(st.Failed) == 0 && s.UIDNext != 0 {
			continue
		}
		e.sum.Examined++
		if j.orphans || (e.bridge && j.labels) {
			later = append(later, j)
		} else {
			todo = append(todo, j)
		}
		if !j.orphans && s != nil && s.NumMessages != nil {
			n := int(*s.NumMessages) - int(st.Count)
			if n < 0 || st.UIDValidity != s.UIDValidity {
				n = int(*s.NumMessages)
			}
			planned += n
			if s.Size != nil && *s.NumMessages > 0 {
				plannedBytes += *s.Size * int64(n) / int64(*s.NumMessages)
			}
		}
	}
	if o.Progress != nil {
		o.Progress.Planned(planned, plannedBytes)
	}
	if e.bridge && len(todo)+len(later) > 0 {
		if err := e.loadLabels(ctx, labelBoxes); err != nil {
			return nil, err
		}
	}
	if err := e.runJobs(ctx, todo); err != nil {
		return e.sum, err
	}
	// Messages only in All Mail (in no folder), and label copies, after
	// every folder is done.
	if err := e.runJobs(ctx, later); err != nil {
		return e.sum, err
	}
	if e.bridge && allMail != nil && allMail.f.Status != nil && allMail.f.Status.NumMessages != nil {
		// Bridge fills its mailboxes during its first sync, for hours on a
		// big account: a count that moved during the run says so.
		if c, err := e.conn(ctx); err == nil {
			sd, err := c.Status(allMail.f.Name, &imap.StatusOptions{NumMessages: true}).Wait()
			if err == nil && sd.NumMessages != nil && *sd.NumMessages != *allMail.f.Status.NumMessages {
				e.sum.BridgeSyncing = true
			}
			e.release(c)
		}
	}
	if o.Mirror && ctx.Err() == nil {
		// After every folder is done, so that no writer is open and every
		// alias that points to a moved message's file is known.
		for _, folder := range slices.Sorted(maps.Keys(e.gone)) {
			n, err := o.Archive.MoveDeleted(folder, e.gone[folder], time.Now())
			e.sum.Mirrored += n
			if err != nil {
				return e.sum, fmt.Errorf("folder %s: moving messages deleted on the server to %s: %w", folder, archive.DeletedDir, err)
			}
			if st, ok := e.mirrorStatus[folder]; ok {
				o.Archive.SetMirrored(folder, st[0], st[1])
			}
		}
	}
	if err := o.Archive.SaveState(); err != nil {
		return e.sum, err
	}
	sort.Slice(e.sum.Failed, func(i, k int) bool {
		a, b := e.sum.Failed[i], e.sum.Failed[k]
		return a.Folder < b.Folder || (a.Folder == b.Folder && a.UID < b.UID)
	})
	e.sum.Elapsed = time.Since(start)
	return e.sum, ctx.Err()
}

type exporter struct {
	o      Options
	sum    *Summary
	bridge bool

	mu     sync.Mutex
	pool   []*account.Conn
	labels map[string][]string // Proton internal ID -> labels

	// Bridge: every folder that is not a view, exported or not, and what a
	// complete pass over them found (see folderIDs).
	real       []realFolder
	idMu       sync.Mutex
	idDone     map[string]map[uint32]string // mailbox name -> UID -> X-Pm-Internal-Id
	ids        map[string]bool              // X-Pm-Internal-Id -> in an exported folder
	idProgress atomic.Int64
	// failedFolders counts folders the archive could not take (folderFailed).
	failedFolders int
	// gone: archive folder -> records of messages deleted on the server
	// (Mirror), moved once every folder is done; mirrorStatus: the
	// folder's UIDNEXT and message count the pass saw, recorded once
	// they are moved.
	gone         map[string][]archive.Record
	mirrorStatus map[string][2]uint32
}

// Plan lists the folders that will be exported, INBOX first, then sorted by
// name.
func Plan(folders []*account.Folder, bridge bool, labels LabelMode, include, exclude []string) []*account.Folder {
	var out []*account.Folder
	for _, p := range PlanFolders(folders, bridge, labels, include, exclude) {
		out = append(out, p.Folder)
	}
	return out
}

// Planned is one folder an export writes.
type Planned struct {
	// Folder is the server's folder.
	Folder *account.Folder
	// Name is the folder's name in the archive ("/" between levels).
	Name string
	// AllMail is set for Proton Mail Bridge's All Mail: only its messages
	// that are in no folder are exported (into the archive folder "All
	// Mail").
	AllMail bool
	// LabelCopies is set for Bridge's Labels/... exported as folders.
	LabelCopies bool
}

// PlanFolders lists the folders that will be exported, with their archive
// names, INBOX first, then sorted by server name.
func PlanFolders(folders []*account.Folder, bridge bool, labels LabelMode, include, exclude []string) []Planned {
	e := &exporter{o: Options{Include: include, Exclude: exclude, Labels: labels}, bridge: bridge}
	jobs, _, allMail, _ := e.plan(folders)
	var out []Planned
	for _, j := range jobs {
		out = append(out, Planned{Folder: j.f, Name: j.name, LabelCopies: j.labels})
	}
	if allMail != nil {
		out = append(out, Planned{Folder: allMail.f, Name: allMail.name, AllMail: true})
	}
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i].Folder.Path(), out[k].Folder.Path()
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
	return out
}

// plan decides which folders are exported, under which names; for Bridge it
// also returns the label mailboxes, All Mail, and every folder that is not
// a view (exported or not).
func (e *exporter) plan(folders []*account.Folder) (jobs []*job, labelBoxes []*account.Folder, allMail *job, real []realFolder) {
	for _, f := range folders {
		if !f.Selectable() {
			continue
		}
		segs := f.Segments
		if e.bridge {
			switch {
			case f.Has(imap.MailboxAttrAll) || f.Name == "All Mail":
				if e.selected(f.Path()) {
					allMail = &job{f: f, name: f.Path(), segs: segs, orphans: true}
				}
				continue
			case f.Has(imap.MailboxAttrFlagged) || f.Name == "Starred" || f.Name == "Scheduled":
				labelBoxes = append(labelBoxes, f)
				continue
			case len(segs) > 1 && segs[0] == "Labels":
				labelBoxes = append(labelBoxes, f)
				if e.o.Labels == LabelsAsFolders && e.selected(f.Path()) {
					jobs = append(jobs, &job{f: f, name: f.Path(), segs: segs, labels: true})
				}
				continue
			case len(segs) > 1 && segs[0] == "Folders":
				segs = segs[1:]
			}
		}
		name := strings.Join(segs, "/")
		sel := e.selected(name) || e.selected(f.Path())
		if e.bridge {
			real = append(real, realFolder{f: f, name: name, selected: sel})
		}
		if !sel {
			continue
		}
		jobs = append(jobs, &job{f: f, name: name, segs: segs})
	}
	return jobs, labelBoxes, allMail, real
}

// Selected reports whether folder p is selected by --folder globs include
// and --exclude globs exclude, as export selects folders.
func Selected(p string, include, exclude []string) bool {
	e := &exporter{o: Options{Include: include, Exclude: exclude}}
	return e.selected(p)
}

func (e *exporter) selected(p string) bool {
	match := func(pats []string) bool {
		for _, pat := range pats {
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
			// "A" also selects everything below A
			if ok, _ := path.Match(pat+"/*", p); ok && !strings.ContainsAny(pat, "*?[") {
				return true
			}
		}
		return false
	}
	if len(e.o.Include) > 0 && !match(e.o.Include) {
		return false
	}
	return !match(e.o.Exclude)
}

// loadLabels reads X-Pm-Internal-Id of every message in Bridge's label
// mailboxes (Labels/..., Starred), so that each exported message can carry
// its labels.
func (e *exporter) loadLabels(ctx context.Context, boxes []*account.Folder) error {
	e.labels = map[string][]string{}
	done := 0
	return e.withRetry(ctx, "reading the labels", func(c *account.Conn) (int, error) {
		for ; done < len(boxes); done++ {
			b := boxes[done]
			sel, err := c.Examine(b.Name)
			if err != nil {
				return done, err
			}
			var ids map[uint32]string
			if sel.NumMessages > 0 {
				if ids, err = c.FetchHeaderField("X-Pm-Internal-Id"); err != nil {
					return done, fmt.Errorf("reading the labels of %q: %w", b.Name, err)
				}
			}
			label := b.Path()
			if len(b.Segments) > 1 && b.Segments[0] == "Labels" {
				label = strings.Join(b.Segments[1:], "/")
			}
			for _, id := range ids {
				if id != "" {
					e.labels[id] = append(e.labels[id], label)
				}
			}
		}
		return done, nil
	})
}

// withRetry runs fn on a connection, and again on a new one when the
// connection drops, with backoff, as long as fn makes progress (its first
// result grows) or has not failed more than 6 times in a row.
func (e *exporter) withRetry(ctx context.Context, what string, fn func(c *account.Conn) (int, error)) error {
	backoff := firstBackoff
	attempts, mark := 0, -1
	for {
		c, err := e.conn(ctx)
		if err != nil {
			return err
		}
		n, err := fn(c)
		e.release(c)
		if err == nil {
			return nil
		}
		if n != mark {
			mark, attempts, backoff = n, 0, firstBackoff
		}
		if ctx.Err() != nil || !isConnErr(c, err) {
			return err
		}
		attempts++
		if attempts > 6 {
			return fmt.Errorf("%s: giving up after %d reconnects: %w", what, attempts-1, err)
		}
		e.o.Log("%s: %v; reconnecting in %v", what, err, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// conn takes a connection from the pool, dialing a new one if needed.
func (e *exporter) conn(ctx context.Context) (*account.Conn, error) {
	e.mu.Lock()
	if n := len(e.pool); n > 0 {
		c := e.pool[n-1]
		e.pool = e.pool[:n-1]
		e.mu.Unlock()
		select {
		case <-c.Closed():
			c.Close()
			return e.o.Account.Dial(ctx)
		default:
			return c, nil
		}
	}
	e.mu.Unlock()
	return e.o.Account.Dial(ctx)
}

func (e *exporter) release(c *account.Conn) {
	if c == nil {
		return
	}
	select {
	case <-c.Closed():
		c.Close()
		return
	default:
	}
	e.mu.Lock()
	e.pool = append(e.pool, c)
	e.mu.Unlock()
}

// runJobs exports folders with up to Connections workers.
func (e *exporter) runJobs(ctx context.Context, jobs []*job) error {
	ch := make(chan *job)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	workers := min(e.o.Connections, len(jobs))
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				if err := e.folder(ctx, j); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	// Biggest folders first, so that one big folder does not run alone at the end.
	sort.SliceStable(jobs, func(i, k int) bool { return msgs(jobs[i]) > msgs(jobs[k]) })
loop:
	for _, j := range jobs {
		errMu.Lock()
		stop := firstErr != nil
		errMu.Unlock()
		if stop {
			break
		}
		select {
		case ch <- j:
		case <-ctx.Done():
			break loop
		}
	}
	close(ch)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func msgs(j *job) uint32 {
	if j.f.Status != nil && j.f.Status.NumMessages != nil {
		return *j.f.Status.NumMessages
	}
	return 0
}

// fatal marks errors that stop the whole run (disk, archive).
type fatal struct{ err error }

func (f fatal) Error() string { return f.err.Error() }
func (f fatal) Unwrap() error { return f.err }

// folder exports one folder, reconnecting with backoff when the connection
// drops and resuming after the last message written.
func (e *exporter) folder(ctx context.Context, j *job) error {
	w, err := e.o.Archive.OpenFolder(j.name, j.segs)
	if err != nil {
		return e.folderFailed(j, err)
	}
	w.LabelCopies = j.labels
	fs := &folderRun{e: e, j: j, w: w, tries: map[uint32]int{}, lastErr: map[uint32]string{}}
	backoff := firstBackoff
	attempts := 0
	progress := func() int64 { return int64(e.sum.count()) + e.idProgress.Load() + fs.idsDone }
	progressMark := progress()
	for {
		c, err := e.conn(ctx)
		if err == nil {
			err = fs.run(ctx, c)
			e.release(c)
		}
		if err == nil {
			break
		}
		if n := progress(); n != progressMark {
			// progress since the last drop: start the backoff again
			progressMark, attempts, backoff = n, 0, firstBackoff
		}
		var fe fatal
		if ctx.Err() != nil {
			w.Close()
			return err
		}
		if cerr := w.Commit(); cerr != nil && !errors.As(err, &fe) {
			// what was written before the failure is indexed before the
			// folder is looked at again, so that none of it is fetched twice
			err = fatal{cerr}
		}
		if errors.As(err, &fe) {
			// A local failure tied to this folder (a name or path the file
			// system refuses, a disk error on one file): what was written
			// is kept, the folder is reported, the others go on.
			w.Close()
			return e.folderFailed(j, fe.err)
		}
		if ce := account.AsCapError(err, "download", false); ce != nil {
			w.Close() // a daily cap: stop the run, the next one goes on
			return ce
		}
		if d, ok := account.ThrottleBackoff(err); ok && attempts < 6 {
			attempts++ // Microsoft: "Suggested Backoff Time: N milliseconds"
			e.o.Log("folder %s: %v; waiting %v as the server asks", j.name, err, d)
			select {
			case <-time.After(d):
				continue
			case <-ctx.Done():
				w.Close()
				return ctx.Err()
			}
		}
		var ie *imap.Error
		var ue *UnaccountedError
		if errors.As(err, &ie) || errors.As(err, &ue) {
			// The server refused something about the folder itself (EXAMINE,
			// SEARCH), or Bridge's All Mail could not be sorted out: report
			// the folder, go on with the others; the next run tries again.
			e.sum.fail(Failure{Folder: j.name, Error: err.Error()})
			return w.Close()
		}
		var ce *account.ConnectError
		if errors.As(err, &ce) && (ce.Op == "login to" || strings.HasPrefix(ce.Op, "TLS") || strings.HasPrefix(ce.Op, "STARTTLS")) {
			w.Close()
			return err
		}
		attempts++
		if attempts > 6 {
			w.Close()
			return fmt.Errorf("folder %s: giving up after %d reconnects: %w", j.name, attempts-1, err)
		}
		e.o.Log("folder %s: %v; reconnecting in %v", j.name, err, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			w.Close()
			return ctx.Err()
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	return w.Close()
}

// folderFailed reports a folder the archive could not take, and lets the
// other folders go on; the folder's state is left as it was, so the next
// run tries it again. A failure no folder could escape (disk full, quota,
// a read-only file system) stops the run instead.
func (e *exporter) folderFailed(j *job, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("folder %s: writing to the archive: %w", j.name, err)
	}
	e.o.Log("folder %s: %v", j.name, err)
	e.sum.fail(Failure{Folder: j.name, Error: fmt.Sprintf("could not be written to the archive (%v); the other folders were exported; fix the cause and run again: the next run tries this folder again", err)})
	e.mu.Lock()
	e.failedFolders++
	e.mu.Unlock()
	return nil
}

// folderRun is the state of one folder's export across reconnects.
type folderRun struct {
	e       *exporter
	j       *job
	w       *archive.FolderWriter
	tries   map[uint32]int
	lastErr map[uint32]string
	failed  []uint32
	// rescan: content keys of messages already archived under an older
	// UIDVALIDITY, with how many copies each; matches become aliases.
	rescan map[string][]archive.Record
	// limit is the highest UID of Bridge's All Mail (or Labels/...) this
	// run looks at: what arrived after the run began waits for the next.
	limit uint32
	// idsDone counts the steps of the pass over Bridge's folders that
	// finished (progress, for the reconnect backoff).
	idsDone int64
	// excluded: UIDs left out because their folder was excluded.
	excluded map[uint32]bool
	// mirrored: findGone compared the archive with the whole folder.
	mirrored bool
}

func (fr *folderRun) run(ctx context.Context, c *account.Conn) error {
	e, j := fr.e, fr.j
	sel, err := c.Examine(j.f.Name)
	if err != nil {
		return err
	}
	st := e.o.Archive.State(j.name)
	after := st.LastUID
	retry := append([]uint32(nil), st.Failed...)
	renumbered := st.UIDValidity != 0 && st.UIDValidity != sel.UIDValidity
	if renumbered {
		// The server renumbered the folder (Bridge does on repair or
		// re-login). Fetch everything again and keep only what is new.
		e.o.Log("folder %s: UIDVALIDITY changed from %d to %d; rescanning, matching messages by content", j.name, st.UIDValidity, sel.UIDValidity)
		after, retry = 0, nil
	}
	var complete uint32 // what the last pass that finished looked at
	if !renumbered && st.UIDNext > 0 {
		complete = st.UIDNext - 1
	}
	var have map[uint32]bool
	if after > complete || j.orphans {
		// The last pass did not finish (or met mail that arrived during
		// it). A server may answer a FETCH in any order (gluon, so Bridge,
		// does), so the UIDs it stored need not be the lowest: every UID
		// above the last complete pass is looked at again, and those
		// already stored are skipped. Bridge's All Mail always starts
		// there: which of its messages are in no folder is decided by a
		// pass that finished (a message that leaves its folder later is
		// archived already).
		after = complete
		if have, err = fr.storedAbove(sel.UIDValidity, after); err != nil {
			return fatal{err}
		}
	}
	if (renumbered || st.Rescan) && fr.rescan == nil {
		if err := fr.loadRescan(sel.UIDValidity); err != nil {
			return fatal{err}
		}
	}
	var uids []uint32
	if sel.NumMessages > 0 {
		if uids, err = c.UIDsAbove(after); err != nil {
			return err
		}
	}
	// Failed UIDs from earlier runs and this one go first.
	todo := append(retry, uids...)
	todo = fr.dropHopeless(todo)
	if have != nil {
		kept := todo[:0]
		for _, u := range todo {
			if !have[u] {
				kept = append(kept, u)
			}
		}
		todo = kept
	}
	if e.bridge && (j.orphans || (j.labels && e.excludes())) {
		if fr.limit == 0 {
			// Only what was there before the pass over the folders starts:
			// a message that arrives later is looked at by the next run.
			fr.limit = uint32(sel.UIDNext) - 1
			if s := j.f.Status; s != nil && s.UIDNext != 0 && s.UIDValidity == sel.UIDValidity {
				fr.limit = min(fr.limit, uint32(s.UIDNext)-1)
			}
		}
		if todo, err = fr.sortOut(ctx, c, sel.UIDValidity, todo); err != nil {
			return err
		}
	}
	for len(todo) > 0 {
		n := min(len(todo), e.o.ChunkSize)
		chunk := todo[:n]
		if err := fr.chunk(ctx, c, sel.UIDValidity, chunk); err != nil {
			// what arrived whole is kept, whatever the error
			if cerr := fr.w.Commit(); cerr != nil {
				return fatal{cerr}
			}
			return err
		}
		todo = todo[n:]
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if e.o.RefreshFlags && !renumbered && !j.orphans && after > 0 {
		if err := fr.refreshFlags(c, sel.UIDValidity, after); err != nil {
			return err
		}
	}
	if err := fr.w.Commit(); err != nil {
		return fatal{err}
	}
	if e.o.Mirror && !renumbered {
		if err := fr.findGone(c, sel.UIDValidity, sel.NumMessages); err != nil {
			return err
		}
	}
	var msgs uint32
	if j.f.Status != nil && j.f.Status.NumMessages != nil {
		msgs = *j.f.Status.NumMessages
	}
	uidNext := uint32(sel.UIDNext)
	var modSeq uint64
	if j.f.Status != nil && j.f.Status.UIDNext != 0 {
		uidNext = uint32(j.f.Status.UIDNext)
		if e.o.RefreshFlags {
			// only a pass that compared flags may say they are known
			modSeq = j.f.Status.HighestModSeq
		}
		if j.f.Status.UIDValidity != sel.UIDValidity {
			uidNext, msgs, modSeq = 0, 0, 0 // changed under us: look again next time
		}
	}
	if fr.limit != 0 && uidNext > fr.limit+1 {
		uidNext = fr.limit + 1 // what came later is looked at next time
	}
	var attrs []string
	for _, a := range j.f.Attrs {
		switch a {
		case imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren, imap.MailboxAttrHasNoChildren, imap.MailboxAttrMarked, imap.MailboxAttrUnmarked, imap.MailboxAttrNoInferiors:
		default:
			attrs = append(attrs, string(a))
		}
	}
	e.o.Archive.SetStatus(j.name, j.segs, attrs, sel.UIDValidity, uidNext, msgs, modSeq, fr.failed)
	if fr.mirrored {
		e.mu.Lock()
		if e.mirrorStatus == nil {
			e.mirrorStatus = map[string][2]uint32{}
		}
		e.mirrorStatus[j.name] = [2]uint32{uidNext, msgs}
		if e.gone == nil {
			e.gone = map[string][]archive.Record{}
		}
		if _, ok := e.gone[j.name]; !ok {
			e.gone[j.name] = nil
		}
		e.mu.Unlock()
	}
	e.sum.mu.Lock()
	e.sum.Excluded += len(fr.excluded)
	e.sum.mu.Unlock()
	return nil
}

// findGone notes the archived messages of the folder (of uidValidity)
// whose UID the server no longer has: deleted (or moved away) on the
// server since they were archived.
func (fr *folderRun) findGone(c *account.Conn, uidValidity, numMessages uint32) error {
	recs, err := fr.e.o.Archive.Records(fr.j.name)
	if err != nil {
		return fatal{err}
	}
	if len(recs) == 0 {
		fr.mirrored = true
		return nil
	}
	have := map[uint32]bool{}
	if numMessages > 0 {
		uids, err := c.UIDsAbove(0)
		if err != nil {
			return err
		}
		if uint32(len(uids)) != numMessages {
			// The folder changed during the run, or the server's answer
			// is short: move nothing on its word; the next run looks again.
			fr.e.o.Log("folder %s: the server listed %d UIDs for %d messages; messages deleted on the server are moved to %s next time", fr.j.name, len(uids), numMessages, archive.DeletedDir)
			return nil
		}
		for _, u := range uids {
			have[u] = true
		}
	}
	var gone []archive.Record
	for _, r := range recs {
		if r.UIDValidity == uidValidity && !have[r.UID] {
			gone = append(gone, r)
		}
	}
	fr.e.mu.Lock()
	defer fr.e.mu.Unlock()
	if fr.e.gone == nil {
		fr.e.gone = map[string][]archive.Record{}
	}
	fr.e.gone[fr.j.name] = gone
	fr.mirrored = true
	return nil
}

// storedAbove returns the UIDs above after, of uidValidity, that the
// folder's index records (or that wait for the next commit).
func (fr *folderRun) storedAbove(uidValidity, after uint32) (map[uint32]bool, error) {
	recs, err := fr.e.o.Archive.Records(fr.j.name)
	if err != nil {
		return nil, err
	}
	have := map[uint32]bool{}
	for _, r := range append(recs, fr.w.Pending()...) {
		if r.UIDValidity == uidValidity && r.UID > after && !r.FlagsUpdate {
			have[r.UID] = true
		}
	}
	return have, nil
}

// refreshFlags records new flags (and Proton labels) of the messages
// archived up to UID last.
func (fr *folderRun) refreshFlags(c *account.Conn, uidValidity, last uint32) error {
	recs, err := fr.e.o.Archive.Records(fr.j.name)
	if err != nil {
		return fatal{err}
	}
	have := map[uint32]archive.Record{}
	for _, r := range recs {
		if r.UIDValidity == uidValidity {
			have[r.UID] = r
		}
	}
	now, err := c.FetchFlags(last)
	if err != nil {
		return err
	}
	for uid, flags := range now {
		old, ok := have[uid]
		if !ok {
			continue
		}
		if arch := fr.e.o.Archive; arch.Encrypted() {
			// the index holds a tag of the flags and labels, not them
			var labels []string
			if fr.e.bridge && old.PMInternalID != "" {
				labels = append([]string{}, fr.e.labels[old.PMInternalID]...)
			}
			if arch.FlagsTag(flags, labels) == arch.RecordFlagsTag(&old) {
				continue
			}
			fr.w.UpdateFlags(uidValidity, uid, flags, labels)
			fr.e.sum.mu.Lock()
			fr.e.sum.FlagsUpdated++
			fr.e.sum.mu.Unlock()
			continue
		}
		var labels []string // nil: unchanged
		if fr.e.bridge && old.PMInternalID != "" {
			if l := fr.e.labels[old.PMInternalID]; !sameFlags(l, old.Labels) {
				labels = append([]string{}, l...)
			}
		}
		if sameFlags(old.Flags, flags) && labels == nil {
			continue
		}
		fr.w.UpdateFlags(uidValidity, uid, flags, labels)
		fr.e.sum.mu.Lock()
		fr.e.sum.FlagsUpdated++
		fr.e.sum.mu.Unlock()
	}
	return nil
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[string]bool{}
	for _, f := range a {
		set[strings.ToLower(f)] = true
	}
	for _, f := range b {
		if !set[strings.ToLower(f)] {
			return false
		}
	}
	return true
}

// dropHopeless removes UIDs that failed too often in this run.
func (fr *folderRun) dropHopeless(uids []uint32) []uint32 {
	out := uids[:0:0]
	for _, u := range uids {
		if fr.tries[u] >= fr.e.o.Retries {
			continue
		}
		out = append(out, u)
	}
	return out
}

// chunk exports a group of UIDs: metadata first (the From_ line and the
// index need it before the body), then the bodies, streamed. Every UID asked
// for is accounted for: written, or retried, or reported.
func (fr *folderRun) chunk(ctx context.Context, c *account.Conn, uidValidity uint32, uids []uint32) error {
	e, j := fr.e, fr.j
	meta, err := c.FetchMeta(uids)
	if err != nil {
		return err
	}
	var want []uint32
	var missing []uint32
	for _, u := range uids {
		if _, ok := meta[u]; ok {
			want = append(want, u)
		} else {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		// A UID without metadata was expunged since the SEARCH (nothing to
		// keep), unless the folder still has it: then it is asked for once
		// more, and reported if it still does not come.
		still, err := c.UIDsIn(missing)
		if err != nil {
			return err
		}
		more, err := c.FetchMeta(still)
		if err != nil {
			return err
		}
		for _, u := range still {
			if md, ok := more[u]; ok {
				meta[u] = md
				want = append(want, u)
				continue
			}
			fr.tries[u] = e.o.Retries
			fr.lastErr[u] = "the server did not return the message's flags and date"
			fr.noteHopeless([]uint32{u})
		}
		slices.Sort(want)
	}
	put := func(uid uint32, r io.Reader, size int64) error {
		if err := ctx.Err(); err != nil {
			return err // interrupted: this message waits for the next run
		}
		md := meta[uid]
		m := &message.Meta{
			Segments:     j.segs,
			UIDValidity:  uidValidity,
			UID:          uid,
			Flags:        md.Flags,
			InternalDate: md.InternalDate,
		}
		if m.Flags == nil {
			m.Flags = []string{}
		}
		var scan *message.DecryptScanner
		if e.bridge {
			scan = &message.DecryptScanner{}
			r = io.TeeReader(r, scan)
		}
		stored, err := fr.w.Put(m, r, func(m *message.Meta, here archive.Record) (*archive.Record, error) {
			if scan != nil && scan.Found {
				m.Undecryptable = true
			}
			return fr.dedup(m, here)
		})
		if err != nil {
			var re *account.ReadError
			if errors.As(err, &re) {
				return err
			}
			return fatal{fmt.Errorf("writing %s UID %d to the archive: %w", j.name, uid, err)}
		}
		e.sum.add(stored, m.Size)
		if stored && j.orphans {
			e.sum.mu.Lock()
			e.sum.AllMailOnly++
			e.sum.mu.Unlock()
		}
		if stored && m.Undecryptable {
			e.sum.mu.Lock()
			e.sum.Undecryptable = append(e.sum.Undecryptable, Failure{Folder: j.name, UID: uid,
				Error: "Proton Mail Bridge could not decrypt this message; the archive holds what Bridge served"})
			e.sum.mu.Unlock()
		}
		if e.o.Progress != nil {
			e.o.Progress.Message(j.name, m.Size)
		}
		if fr.w.NeedCommit() {
			// durable in the background while the next messages come
			if err := fr.w.CommitBackground(); err != nil {
				return fatal{err}
			}
		}
		return nil
	}
	throttled := 0
	for attempt := 0; len(want) > 0; attempt++ {
		done, ferr := c.FetchBodies(want, put)
		if err := ctx.Err(); err != nil {
			return err // the caller commits what arrived
		}
		if ferr == nil && len(done) < len(want) && attempt == 0 {
			// The server said OK but some messages did not come: go-imap drops
			// an answer whose UID comes after the body. Ask by sequence number.
			seqs := map[uint32]uint32{}
			for _, u := range want {
				if !done[u] && meta[u].Seq != 0 {
					seqs[meta[u].Seq] = u
				}
			}
			var more map[uint32]bool
			more, ferr = c.FetchBodiesBySeq(seqs, put)
			for u := range more {
				done[u] = true
			}
		}
		var rest []uint32
		for _, u := range want {
			if !done[u] {
				rest = append(rest, u)
			}
		}
		var fe fatal
		if errors.As(ferr, &fe) {
			return ferr
		}
		if ce := account.AsCapError(ferr, "download", false); ce != nil {
			return ce // a daily cap: the caller commits and stops the run
		}
		if d, ok := account.ThrottleBackoff(ferr); ok && throttled < 10 {
			// Microsoft: "Request is throttled. Suggested Backoff Time: N
			// milliseconds": wait as asked; it counts no try
			throttled++
			e.o.Log("folder %s: %v; waiting %v as the server asks", j.name, ferr, d)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
			want = rest
			continue
		}
		if ferr != nil && isConnErr(c, ferr) {
			// The connection is gone: the caller reconnects and resumes; the
			// messages written so far are committed first.
			if err := fr.w.Commit(); err != nil {
				return fatal{err}
			}
			// Only the message in flight counts a try: one that kills the
			// connection every time is reported in the end.
			if len(rest) > 0 {
				fr.tries[rest[0]]++
				fr.lastErr[rest[0]] = ferr.Error()
				fr.noteHopeless(rest[:1])
			}
			return ferr
		}
		// The server answered but did not deliver some messages (NO, NIL
		// body, or a response shape go-imap drops): try those again alone.
		for _, u := range rest {
			fr.tries[u]++
			if ferr != nil {
				fr.lastErr[u] = ferr.Error()
			} else if fr.lastErr[u] == "" {
				fr.lastErr[u] = "the server did not return the message"
			}
		}
		fr.noteHopeless(rest)
		want = fr.dropHopeless(rest)
		if len(want) > 0 {
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		if len(want) > 1 && ferr != nil {
			// A NO for the whole FETCH: ask for each message alone, so that
			// one message the server cannot deliver does not fail the others.
			for _, u := range want {
				if err := fr.chunk(ctx, c, uidValidity, []uint32{u}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return nil
}

func (fr *folderRun) noteHopeless(uids []uint32) {
	for _, u := range uids {
		if fr.tries[u] == fr.e.o.Retries {
			fr.tries[u]++ // report once
			fr.failed = append(fr.failed, u)
			fr.e.sum.fail(Failure{Folder: fr.j.name, UID: u, Error: fr.lastErr[u]})
		}
	}
}

// loadRescan builds the content keys of messages archived under earlier
// UIDVALIDITYs that no record of the current one has matched yet.
func (fr *folderRun) loadRescan(current uint32) error {
	recs, err := fr.e.o.Archive.Records(fr.j.name)
	if err != nil {
		return err
	}
	type gen struct {
		uv  uint32
		key string
	}
	count := map[gen]int{}
	loc := map[string]archive.Record{}
	for _, r := range recs {
		k := fr.e.o.Archive.RecordKey(&r) // a tag in an encrypted archive
		count[gen{r.UIDValidity, k}]++
		if !r.Alias {
			if _, ok := loc[k]; !ok {
				loc[k] = r
			}
		} else if _, ok := loc[k]; !ok {
			loc[k] = r
		}
	}
	avail := map[string]int{}
	for g, n := range count {
		if g.uv != current && n > avail[g.key] {
			avail[g.key] = n
		}
	}
	fr.rescan = map[string][]archive.Record{}
	for k, n := range avail {
		n -= count[gen{current, k}]
		for i := 0; i < n; i++ {
			fr.rescan[k] = append(fr.rescan[k], loc[k])
		}
	}
	return nil
}

// dedup decides whether a message is already in this folder of the
// archive: after a UIDVALIDITY change, the same content under its old UID.
// A message is never deduplicated across folders: a Proton message in two
// folders (INBOX and Sent) is stored in both. Bridge's views (All Mail,
// Starred, Labels/...) are not folders: their messages are sorted out before
// they are fetched (see sortOut) and recorded as labels.
func (fr *folderRun) dedup(m *message.Meta, here archive.Record) (*archive.Record, error) {
	e := fr.e
	if e.bridge && m.PMInternalID != "" {
		m.Labels = e.labels[m.PMInternalID]
	}
	if fr.rescan != nil {
		k := e.o.Archive.MetaKey(m)
		if recs := fr.rescan[k]; len(recs) > 0 {
			r := recs[0]
			fr.rescan[k] = recs[1:]
			return &r, nil
		}
	}
	if e.bridge && m.PMInternalID != "" && !fr.j.labels {
		// remembered for the All Mail pass: archived, so not in no folder
		if _, err := e.o.Archive.ClaimPMID(m.PMInternalID, here); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// UnaccountedError says that Proton Mail Bridge did not give the
// X-Pm-Internal-Id of some messages it holds, so which messages of All Mail
// are in no folder (or in an excluded one) could not be decided. The folder
// that needed it is reported and its pass runs again next time.
type UnaccountedError struct {
	Mailbox string
	UIDs    []uint32
}

func (e *UnaccountedError) Error() string {
	u := fmt.Sprint(e.UIDs)
	if len(e.UIDs) > 10 {
		u = fmt.Sprint(e.UIDs[:10]) + "..."
	}
	return fmt.Sprintf("Proton Mail Bridge did not give the X-Pm-Internal-Id of %d messages of %q (UIDs %s), so which messages are in no folder is not known: nothing was stored for them, and the next run looks again", len(e.UIDs), e.Mailbox, u)
}

// excludes reports whether --folder/--exclude leave out a Bridge folder.
func (e *exporter) excludes() bool {
	for _, rf := range e.real {
		if !rf.selected {
			return true
		}
	}
	return false
}

// sortOut keeps, of UIDs of Bridge's All Mail, those whose message is in no
// folder and not archived yet; of a Labels/... mailbox exported as a folder,
// those not only in excluded folders. A message in an excluded folder is
// left out (and counted). UIDs above fr.limit wait for the next run. It
// leaves the job's mailbox selected.
func (fr *folderRun) sortOut(ctx context.Context, c *account.Conn, uidValidity uint32, todo []uint32) ([]uint32, error) {
	e, j := fr.e, fr.j
	var in []uint32
	for _, u := range todo {
		if u <= fr.limit {
			in = append(in, u)
		}
	}
	if len(in) == 0 {
		return nil, nil
	}
	ids, err := idsOf(c, j.f.Name, in)
	if err != nil {
		return nil, err
	}
	inFolders, err := e.folderIDs(ctx, c)
	if err != nil {
		return nil, err
	}
	fr.idsDone++
	sel, err := c.Examine(j.f.Name)
	if err != nil {
		return nil, err
	}
	if sel.UIDValidity != uidValidity {
		return nil, &UnaccountedError{Mailbox: j.f.Name, UIDs: in}
	}
	fr.excluded = map[uint32]bool{}
	var out []uint32
	for _, u := range in {
		id, there := ids[u]
		if !there {
			continue // expunged since
		}
		selected, inFolder := inFolders[id]
		switch {
		case id == "":
			out = append(out, u) // no Proton ID: cannot be matched, kept
		case inFolder && !selected:
			fr.excluded[u] = true
		case j.orphans && inFolder:
			// in a folder: exported there
		case j.orphans:
			archived, err := e.o.Archive.HasPMID(id)
			if err != nil {
				return nil, fatal{err}
			}
			if !archived {
				out = append(out, u)
			}
		default:
			out = append(out, u)
		}
	}
	return out, nil
}

// folderIDs returns the X-Pm-Internal-Id of every message in every Bridge
// folder that is not a view, exported or not, mapped to whether one of its
// folders is exported. It is built once per run, folder by folder (a
// folder whose pass was cut is read again), and only from passes in which
// every UID of the folder was accounted for.
func (e *exporter) folderIDs(ctx context.Context, c *account.Conn) (map[string]bool, error) {
	e.idMu.Lock()
	defer e.idMu.Unlock()
	if e.ids != nil {
		return e.ids, nil
	}
	if e.idDone == nil {
		e.idDone = map[string]map[uint32]string{}
	}
	for _, rf := range e.real {
		if _, ok := e.idDone[rf.f.Name]; ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := e.folderIDsOf(c, rf)
		if err != nil {
			return nil, err
		}
		e.idDone[rf.f.Name] = m
		e.idProgress.Add(1)
	}
	ids := map[string]bool{}
	for _, rf := range e.real {
		for _, id := range e.idDone[rf.f.Name] {
			if id != "" {
				ids[id] = ids[id] || rf.selected
			}
		}
	}
	e.ids = ids
	return ids, nil
}

// folderIDsOf reads the X-Pm-Internal-Id of every message of one folder:
// from the archive for the UIDs it holds, from the server for the others.
func (e *exporter) folderIDsOf(c *account.Conn, rf realFolder) (map[uint32]string, error) {
	sel, err := c.Examine(rf.f.Name)
	if err != nil {
		return nil, err
	}
	out := map[uint32]string{}
	if sel.NumMessages == 0 {
		return out, nil
	}
	uids, err := c.UIDsAbove(0)
	if err != nil {
		return nil, err
	}
	known := map[uint32]string{}
	if e.o.Archive != nil {
		recs, err := e.o.Archive.Records(rf.name)
		if err != nil {
			return nil, fatal{err}
		}
		for _, r := range recs {
			if r.UIDValidity == sel.UIDValidity && r.PMInternalID != "" {
				known[r.UID] = r.PMInternalID
			}
		}
	}
	var need []uint32
	for _, u := range uids {
		if id, ok := known[u]; ok {
			out[u] = id
		} else {
			need = append(need, u)
		}
	}
	got, err := idsOf(c, rf.f.Name, need)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, got)
	return out, nil
}

// idsOf fetches the X-Pm-Internal-Id of uids in the open mailbox. Every UID
// is accounted for: a UID the server did not answer for must be gone (a
// UID SEARCH says so), else the result is an UnaccountedError.
func idsOf(c *account.Conn, mailbox string, uids []uint32) (map[uint32]string, error) {
	out := map[uint32]string{}
	for i := 0; i < len(uids); i += 5000 {
		got, err := c.FetchHeaderFieldOf("X-Pm-Internal-Id", uids[i:min(i+5000, len(uids))])
		if err != nil {
			return nil, err
		}
		maps.Copy(out, got)
	}
	var missing []uint32
	for _, u := range uids {
		if _, ok := out[u]; !ok {
			missing = append(missing, u)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	still, err := c.UIDsIn(missing)
	if err != nil {
		return nil, err
	}
	if len(still) > 0 {
		return nil, &UnaccountedError{Mailbox: mailbox, UIDs: still}
	}
	return out, nil
}

// AllMailOnly counts, on a Proton Mail Bridge account, the messages of All
// Mail that are in no folder, which an export with these options stores into
// the archive folder "All Mail", and those it leaves out because their
// folders are excluded. It is 0, 0 when All Mail is not exported.
func AllMailOnly(c *account.Conn, folders []*account.Folder, labels LabelMode, include, exclude []string) (n, excluded int, err error) {
	e := &exporter{o: Options{Include: include, Exclude: exclude, Labels: labels}, bridge: true}
	_, _, allMail, real := e.plan(folders)
	if allMail == nil {
		return 0, 0, nil
	}
	e.real = real
	sel, err := c.Examine(allMail.f.Name)
	if err != nil || sel.NumMessages == 0 {
		return 0, 0, err
	}
	uids, err := c.UIDsAbove(0)
	if err != nil {
		return 0, 0, err
	}
	ids, err := idsOf(c, allMail.f.Name, uids)
	if err != nil {
		return 0, 0, err
	}
	inFolders, err := e.folderIDs(context.Background(), c)
	if err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		selected, inFolder := inFolders[id]
		switch {
		case id == "" || !inFolder:
			n++
		case !selected:
			excluded++
		}
	}
	return n, excluded, nil
}

// isConnErr reports whether the connection is unusable after err.
func isConnErr(c *account.Conn, err error) bool {
	select {
	case <-c.Closed():
		return true
	default:
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return false
	}
	// go-imap closes a connection it cannot read any more (a cut in the
	// middle of a response shows as a parse error), a moment later
	select {
	case <-c.Closed():
		return true
	case <-time.After(200 * time.Millisecond):
	}
	var re *account.ReadError
	var ne net.Error
	return errors.As(err, &re) || errors.Is(err, account.ErrShortLiteral) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) || (errors.As(err, &ne) && ne.Timeout())
}
