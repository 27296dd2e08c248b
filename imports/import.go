package imports

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/message"
)

// Options configure an import.
type Options struct {
	// Account is where the mail goes.
	Account *account.Config
	// Identities decrypt an encrypted mailmove archive (import --identity).
	Identities []age.Identity
	// Source is a file, a folder, or "-" for an mbox on standard input.
	Source string
	// Format forces the input format; empty means detect it.
	Format Format
	// Folder, if set, puts every message into this one target folder.
	Folder string
	// Prefix is put before every target folder ("Imported/Tuta").
	Prefix string
	// Map renames source folders (source path -> target path).
	Map map[string]string
	// LabelsAsFolders: Gmail labels beyond the first become folders (one
	// copy each) instead of keywords.
	LabelsAsFolders bool
	// DryRun only reports what would be created and appended.
	DryRun bool
	// Connections is the most IMAP connections used at once, one target
	// folder each (default 4; 2 for Proton Mail Bridge).
	Connections int
	// JournalDir holds the journals of interrupted and finished imports.
	JournalDir string
	// Progress, if set, is told about each message.
	Progress Progress
	// Log, if set, receives warnings.
	Log func(format string, args ...any)
	// Budget, if set, is --max-bytes-per-day: the run stops with an
	// *account.CapError before an APPEND would cross it.
	Budget *account.DailyBudget

	gmail bool // the target is Gmail (set by Run; see gmail.go)
}

// Progress receives progress reports (see message.Progress).
type Progress = message.Progress

// Kinds of Failure.
const (
	// KindMessage is a message refused: by the server (its words), or by
	// mailmove because it cannot be sent (NUL bytes, a zip archive, a
	// message that does not match its archive index, Bridge's rules).
	KindMessage = "message"
	// KindFolder is a target folder the server refused (CREATE or SELECT
	// answered NO): its messages are refused with it.
	KindFolder = "folder"
	// KindInput is input not read as mail: a file not understood, an
	// unreadable file, a hostile archive index entry.
	KindInput = "input"
	// KindLabel is a Proton label that could not be set.
	KindLabel = "label"
)

// Failure is something reported: a message refused, a folder the server
// refused, input that could not be read.
type Failure struct {
	Source string `json:"source"`
	Folder string `json:"folder,omitempty"`
	// Kind is KindMessage, KindFolder, KindInput or KindLabel.
	Kind string `json:"kind"`
	// Messages is how many messages of the tally this accounts for as
	// refused: 1 for a message, all of them for a folder, 0 otherwise.
	Messages int    `json:"messages"`
	Error    string `json:"error"`
}

// FolderPlan is the tally of one target folder: every message of the
// input meant for it (Messages) is appended, already there (found on the
// server, or in the journal), refused, or, when the run stopped early,
// not done: Messages = Appended + Present + Journal + Refused + NotDone
// (with DryRun, Append in place of Appended).
type FolderPlan struct {
	// Folder is the target folder; empty for messages that have no target
	// (refused by the target's rules before one was chosen).
	Folder string `json:"folder"`
	Create bool   `json:"create"`
	// Sources are the source folders, comma separated.
	Sources string `json:"from"`
	// Messages is how many messages of the input are meant for the folder.
	Messages int `json:"messages"`
	// Append and Bytes are what is (or, with DryRun, would be) sent.
	Append   int   `json:"append"`
	Bytes    int64 `json:"bytes"`
	Appended int   `json:"appended"`
	Present  int   `json:"already_present"`
	Journal  int   `json:"already_imported"`
	Refused  int   `json:"refused"`
	// NotDone are the messages not yet handled when the run stopped (an
	// error, Ctrl-C): the next run goes on with them. Always 0 after a
	// complete run.
	NotDone int `json:"not_done"`
}

// Summary is what an import did (or, with DryRun, would do). Its tally is
// checked before Run returns: Seen = Appended (with DryRun: Planned) +
// Skipped + Refused + NotDone, in total and per folder.
type Summary struct {
	Plan []FolderPlan `json:"folders"`
	// Seen is how many messages were found in the input.
	Seen     int   `json:"seen"`
	Planned  int   `json:"to_append"`
	Appended int   `json:"appended"`
	Bytes    int64 `json:"bytes"`
	// Skipped are the messages already there: on the server, or recorded
	// in the journal by an earlier run.
	Skipped int       `json:"already_there"`
	Refused int       `json:"refused"`
	NotDone int       `json:"not_done"`
	Failed  []Failure `json:"failed"`
	Bridge  bool      `json:"bridge"`
	// Gmail is set when the target is Gmail: labels were set with UID
	// STORE +X-GM-LABELS (see gmail.go).
	Gmail  bool `json:"gmail"`
	DryRun bool `json:"dry_run"`
	// Source is the input as resolved: absolute, symlinks evaluated.
	Source  string        `json:"source"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Tally returns the summary's equation in words.
func (s *Summary) Tally() string {
	done, verb := s.Appended, "appended"
	if s.DryRun {
		done, verb = s.Planned, "to append"
	}
	t := fmt.Sprintf("%d messages seen = %d %s + %d already there + %d refused", s.Seen, done, verb, s.Skipped, s.Refused)
	if s.NotDone > 0 {
		t += fmt.Sprintf(" + %d not done (the run stopped)", s.NotDone)
	}
	return t
}

// ErrOverQuota stops an import when the target account is full.
var ErrOverQuota = errors.New("the target account is over its quota")

// TallyError says that the import could not account for every message:
// a bug in mailmove, never a normal outcome.
type TallyError struct {
	Problems []string
}

func (e *TallyError) Error() string {
	return "mailmove could not account for every message of the input (a bug in mailmove; please report it with this output): " +
		strings.Join(e.Problems, "; ") + ". Check the target account before you rely on this import; running it again appends only what is missing"
}

// bridgeMaxSize is Proton's import limit (it applies to the encrypted size;
// messages close to it may still be refused, and are then reported). A
// variable so that tests can lower it.
var bridgeMaxSize int64 = 70 << 20

type target struct {
	name    string
	segs    []string
	items   []*Item
	sources map[string]bool
	exists  bool
	plan    *FolderPlan
	// gmLabels are the labels to set on the messages appended (Gmail).
	gmLabels map[imap.UID][]string
}

// connSet closes every connection of a run when its context ends, so that
// Ctrl-C and SIGTERM stop an import whatever it waits for.
type connSet struct {
	mu     sync.Mutex
	closed bool
	fns    []func()
}

// add registers a close function; after closeAll it runs at once.
func (s *connSet) add(fn func()) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.fns = append(s.fns, fn)
	}
	s.mu.Unlock()
	if closed {
		fn()
	}
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	fns := s.fns
	s.fns = nil
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// scanCtx runs Scan, returning at once when ctx ends (Scan may be stuck on
// input that does not answer; the process is ending then).
func scanCtx(ctx context.Context, src string, format Format, labelsAsFolders bool, ids []age.Identity) ([]*Item, []error, error) {
	type result struct {
		items []*Item
		bads  []error
		err   error
	}
	ch := make(chan result, 1)
	go func() {
		var res result
		res.err = ScanWith(src, format, labelsAsFolders, ids, func(it *Item) error {
			res.items = append(res.items, it)
			return ctx.Err()
		}, func(err error) { res.bads = append(res.bads, err) })
		ch <- res
	}()
	select {
	case res := <-ch:
		return res.items, res.bads, res.err
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// copyCtx copies r to w, returning at once when ctx ends.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) error {
	ch := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, r)
		ch <- err
	}()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run imports o.Source into o.Account. When ctx ends, every connection is
// closed and Run returns promptly with an error that wraps ctx.Err().
func Run(ctx context.Context, o Options) (*Summary, error) {
	sum, err := run(ctx, o)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		// the connections were closed under the run: that is why it stopped
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return sum, err
}

func run(ctx context.Context, o Options) (*Summary, error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	sum := &Summary{DryRun: o.DryRun, Failed: []Failure{}, Plan: []FolderPlan{}, Source: o.Source}
	src := o.Source
	var ident string
	if src == "-" {
		// An mbox on standard input is read twice (size, then APPEND):
		// keep a copy for the length of the run.
		f, err := os.CreateTemp("", "mailmove-stdin-*.mbox")
		if err != nil {
			return sum, err
		}
		defer os.Remove(f.Name())
		err = copyCtx(ctx, f, os.Stdin)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return sum, fmt.Errorf("reading standard input: %w", err)
		}
		src = f.Name()
	} else {
		var err error
		if src, ident, err = sourceIdentity(src); err != nil {
			return sum, err
		}
		sum.Source = src
	}
	items, bads, err := scanCtx(ctx, src, o.Format, o.LabelsAsFolders, o.Identities)
	for _, e := range bads {
		var ie *InputError
		f := Failure{Kind: KindInput, Error: e.Error()}
		if errors.As(e, &ie) {
			f.Source, f.Error = ie.File, ie.Msg
			if ie.Line > 0 {
				f.Source = fmt.Sprintf("%s line %d", ie.File, ie.Line)
			}
		}
		sum.Failed = append(sum.Failed, f)
	}
	if err != nil {
		return sum, err
	}
	conns := &connSet{}
	defer context.AfterFunc(ctx, conns.closeAll)()
	c, err := o.Account.Dial(ctx)
	if err != nil {
		return sum, err
	}
	conns.add(func() { c.Close() })
	defer func() { c.Logout().Wait(); c.Close() }()
	bridge := o.Account.URL.Bridge || c.IsBridge()
	sum.Bridge = bridge
	folders, err := c.ListFolders()
	if err != nil {
		return sum, fmt.Errorf("listing the target's folders: %w", err)
	}
	o.gmail = !bridge && c.IsGmail()
	sum.Gmail = o.gmail
	delim := '/'
	byName := map[string]*account.Folder{}
	for _, f := range folders {
		if f.Delim != 0 {
			delim = f.Delim
		}
		byName[strings.Join(f.Segments, "/")] = f
	}
	jr, err := openJournal(o.JournalDir, o.Account.URL.String(), o.Source, src, ident)
	if err != nil {
		return sum, err
	}
	defer jr.Close()
	imp := &importer{o: o, sum: sum, bridge: bridge, delim: delim, byName: byName, jr: jr, conns: conns, plans: map[string]*FolderPlan{}}
	if l, ok := c.Caps().AppendLimit(); ok && l != nil {
		imp.appendLimit = int64(*l)
	}
	// Group items by target folder; every item is counted in the tally of
	// its target folder (or of its source folder, if it has none).
	targets := map[string]*target{}
	var order []string
	for _, it := range items {
		name, skip := o.targetFor(it, folders, bridge)
		if skip != "" {
			p := imp.planFor("\x00"+it.Meta.Folder, FolderPlan{Sources: it.Meta.Folder})
			p.Messages++
			imp.refuse(p, it.Source, it.Meta.Folder, 1, KindMessage, skip)
			continue
		}
		t := targets[name]
		if t == nil {
			t = &target{name: name, segs: strings.Split(name, "/"), sources: map[string]bool{}}
			_, t.exists = byName[name]
			t.plan = imp.planFor(name, FolderPlan{Folder: name, Create: !t.exists})
			targets[name] = t
			order = append(order, name)
		}
		t.items = append(t.items, it)
		t.plan.Messages++
		t.sources[it.Meta.Folder] = true
	}
	sort.Strings(order)
	for _, name := range order {
		t := targets[name]
		srcs := make([]string, 0, len(t.sources))
		for s := range t.sources {
			srcs = append(srcs, s)
		}
		sort.Strings(srcs)
		t.plan.Sources = strings.Join(srcs, ", ")
	}

	var plannedMsgs int
	var plannedBytes int64
	for _, name := range order {
		t := targets[name]
		n, b := 0, int64(0)
		for _, it := range t.items {
			if !jr.knows(it) {
				n++
				b += it.Meta.Size
			}
		}
		plannedMsgs += n
		plannedBytes += b
	}
	if o.Progress != nil && !o.DryRun {
		o.Progress.Planned(plannedMsgs, plannedBytes)
	}
	workers := o.Connections
	if workers <= 0 {
		workers = 4
		if bridge {
			workers = 2
		}
	}
	if o.DryRun {
		workers = 1
	}
	if caps := c.Caps(); caps.Has(imap.CapLiteralPlus) && caps.Has(imap.CapMultiAppend) && !bridge && !o.DryRun {
		// each worker appends on a second connection: stay within the limit
		imp.raw = true
		workers = max(1, workers/2)
	}
	workers = min(workers, len(order))
	// Biggest folders first, so that one big folder does not run alone at the end.
	sort.SliceStable(order, func(i, j int) bool { return len(targets[order[i]].items) > len(targets[order[j]].items) })
	jobs := make(chan *target)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wc := c
		if w > 0 {
			if wc, err = o.Account.Dial(ctx); err != nil {
				workers = w
				break
			}
			conns.add(func() { wc.Close() })
		}
		wg.Add(1)
		go func(wc *account.Conn, own bool) {
			defer wg.Done()
			if own {
				defer func() { wc.Logout().Wait(); wc.Close() }()
			}
			for t := range jobs {
				if err := imp.folder(ctx, wc, t); err != nil {
					errs <- err
					for range jobs {
					}
					return
				}
			}
		}(wc, w > 0)
	}
	var runErr error
feed:
	for _, name := range order {
		select {
		case jobs <- targets[name]:
		case runErr = <-errs:
			break feed
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if runErr == nil {
		select {
		case runErr = <-errs:
		default:
		}
	}
	if ctx.Err() != nil {
		// the connections were closed under the run: that is why it stopped
		runErr = ctx.Err()
	}
	sum.Elapsed = time.Since(start)
	if err := imp.finish(len(items), runErr == nil); err != nil && runErr == nil {
		runErr = err
	}
	return sum, runErr
}

// planFor returns the tally entry under key, making it from p if new.
func (im *importer) planFor(key string, p FolderPlan) *FolderPlan {
	im.mu.Lock()
	defer im.mu.Unlock()
	if q := im.plans[key]; q != nil {
		return q
	}
	q := &p
	im.plans[key] = q
	return q
}

// finish puts the tally into the summary and checks it: every message seen
// is appended, already there, refused or (when the run stopped early, not
// complete) not done. A tally that does not hold is a TallyError.
func (im *importer) finish(seen int, complete bool) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	s := im.sum
	var problems []string
	s.Plan = s.Plan[:0]
	s.Seen, s.Planned, s.Skipped, s.Refused, s.NotDone = 0, 0, 0, 0, 0
	for _, p := range im.plans {
		done := p.Appended
		if s.DryRun {
			done = p.Append
		}
		p.NotDone = p.Messages - (done + p.Present + p.Journal + p.Refused)
		name := p.Folder
		if name == "" {
			name = "(no target folder, from " + p.Sources + ")"
		}
		switch {
		case p.NotDone < 0:
			problems = append(problems, fmt.Sprintf("%s: %d messages accounted for, %d seen", name, p.Messages-p.NotDone, p.Messages))
		case p.NotDone > 0 && complete:
			problems = append(problems, fmt.Sprintf("%s: %d of %d messages neither appended, nor already there, nor refused", name, p.NotDone, p.Messages))
		}
		s.Seen += p.Messages
		s.Planned += p.Append
		s.Skipped += p.Present + p.Journal
		s.Refused += p.Refused
		s.NotDone += p.NotDone
		s.Plan = append(s.Plan, *p)
	}
	sort.Slice(s.Plan, func(i, j int) bool {
		if s.Plan[i].Folder != s.Plan[j].Folder {
			return s.Plan[i].Folder < s.Plan[j].Folder
		}
		return s.Plan[i].Sources < s.Plan[j].Sources
	})
	if s.Seen != seen {
		problems = append(problems, fmt.Sprintf("%d messages found in the input, %d in the folders' tallies", seen, s.Seen))
	}
	listed := 0
	for _, f := range s.Failed {
		listed += f.Messages
	}
	if listed != s.Refused {
		problems = append(problems, fmt.Sprintf("%d messages refused, %d listed", s.Refused, listed))
	}
	appended := 0
	for _, p := range s.Plan {
		appended += p.Appended
	}
	if appended != s.Appended {
		problems = append(problems, fmt.Sprintf("%d messages appended, %d in the folders' tallies", s.Appended, appended))
	}
	if len(problems) > 0 {
		return &TallyError{Problems: problems}
	}
	return nil
}

// refuse records refused messages (n of them) in a folder's tally and
// lists them.
func (im *importer) refuse(p *FolderPlan, source, folder string, n int, kind, why string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	p.Refused += n
	im.sum.Failed = append(im.sum.Failed, Failure{Source: source, Folder: folder, Kind: kind, Messages: n, Error: why})
}

// refuseFolder reports a folder the server refused, with every message of
// it not yet accounted for.
func (im *importer) refuseFolder(t *target, err error) {
	im.mu.Lock()
	p := t.plan
	done := p.Appended
	if im.o.DryRun {
		done = p.Append
	}
	n := p.Messages - (done + p.Present + p.Journal + p.Refused)
	im.mu.Unlock()
	im.o.Log("%s: %v", t.name, err)
	im.refuse(p, "folder "+p.Sources, t.name, n, KindFolder, fmt.Sprintf("%v; its %d messages were not imported, every other folder was (use --map to choose another name)", err, n))
}

// folderRefused reports whether err is the server's answer (NO or BAD) to
// a folder command, which concerns that folder alone.
func folderRefused(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Code != imap.ResponseCodeOverQuota
}

// targetFor decides the target folder of an item ("/"-separated), or why it
// is skipped.
func (o *Options) targetFor(it *Item, folders []*account.Folder, bridge bool) (string, string) {
	src := it.Meta.Folder
	var name string
	switch {
	case o.Folder != "":
		name = o.Folder
	case o.Map[src] != "":
		name = o.Map[src]
	default:
		role := it.Role
		if role == "" {
			role = roleOfName(src)
			if bridge || role == "" {
				// archives of Bridge: Spam, Sent, ... by name too
				if r := roleOfName(src); r != "" {
					role = r
				}
			}
		}
		switch {
		case strings.EqualFold(src, "INBOX"):
			name = "INBOX"
		case role == `\All` || role == `\Flagged` || strings.EqualFold(src, "All Mail") || strings.EqualFold(src, "Starred"):
			// messages only in Bridge's All Mail: into the archive folder
			role = `\Archive`
			name = "Archive"
			if o.gmail {
				role = `\All` // Gmail: archived mail is mail in All Mail alone
			}
		default:
			name = src
		}
		if role != "" && name != "INBOX" {
			if f := findRole(folders, role); f != nil {
				name = strings.Join(f.Segments, "/")
			} else if std := stdRoleNames[role]; std != "" && (strings.HasPrefix(src, "[Gmail]/") || strings.HasPrefix(src, "[Google Mail]/")) {
				// Gmail's system mailboxes on a target without them:
				// the usual names, not [Gmail]/...
				name = std
			}
		}
	}
	if o.Prefix != "" && o.Folder == "" {
		name = strings.TrimSuffix(o.Prefix, "/") + "/" + name
	}
	if bridge {
		return bridgeTarget(name, folders)
	}
	return name, ""
}

// stdRoleNames are the usual folder names of special-use roles.
var stdRoleNames = map[string]string{`\Sent`: "Sent", `\Drafts`: "Drafts", `\Junk`: "Junk", `\Trash`: "Trash", `\Archive`: "Archive"}

func findRole(folders []*account.Folder, role string) *account.Folder {
	for _, f := range folders {
		for _, a := range f.Attrs {
			if strings.EqualFold(string(a), role) && f.Selectable() {
				return f
			}
		}
	}
	// servers that do not mark special use: by name
	for _, f := range folders {
		if f.Selectable() && roleOfName(f.Path()) == role {
			return f
		}
	}
	return nil
}

// bridgeTarget applies Proton Mail Bridge's rules: INBOX and system folders
// as they are, user folders under Folders/, never All Mail or Starred.
func bridgeTarget(name string, folders []*account.Folder) (string, string) {
	segs := strings.Split(name, "/")
	switch {
	case name == "INBOX", segs[0] == "Folders" && len(segs) > 1, segs[0] == "Labels" && len(segs) == 2:
		return name, ""
	case segs[0] == "Labels":
		return "", "Proton labels cannot be nested (Labels/" + strings.Join(segs[1:], "/") + "); use --map"
	case strings.EqualFold(name, "All Mail") || strings.EqualFold(name, "Starred"):
		return "", "Proton Mail Bridge refuses messages in " + name + "; use --map to choose a folder"
	}
	for _, f := range folders {
		if f.Path() == name && len(f.Segments) == 1 && f.Selectable() {
			return name, "" // a system folder (Sent, Archive, Spam, Trash, Drafts)
		}
	}
	for i, s := range segs {
		if strings.TrimSpace(s) != s || s == "" {
			segs[i] = strings.TrimSpace(s)
			if segs[i] == "" {
				segs[i] = "_"
			}
		}
	}
	return "Folders/" + strings.Join(segs, "/"), ""
}

type importer struct {
	o      Options
	raw    bool       // append in MULTIAPPEND batches on account.Appender connections
	mu     sync.Mutex // guards sum, jr and byName
	sum    *Summary
	bridge bool
	// appendLimit is the server's APPENDLIMIT (0: none announced).
	appendLimit int64
	delim       rune
	byName      map[string]*account.Folder
	jr          *journal
	conns       *connSet
	plans       map[string]*FolderPlan // the tally, by target folder
}

// serverName turns a "/"-separated path into the server's name.
func (im *importer) serverName(segs []string) string {
	if im.delim == '/' {
		return strings.Join(segs, "/")
	}
	parts := make([]string, len(segs))
	for i, s := range segs {
		parts[i] = strings.ReplaceAll(s, string(im.delim), "_")
	}
	return strings.Join(parts, string(im.delim))
}

type key struct {
	id   string
	size int64
}

// prep is a message ready to send: its size on the wire and its key.
type prep struct {
	it   *Item
	size int64
	k    key
}

func (im *importer) folder(ctx context.Context, c *account.Conn, t *target) error {
	o := im.o
	server := im.serverName(t.segs)
	plan := t.plan
	// What the folder already holds, as a multiset of (Message-ID, size);
	// Bridge rebuilds messages, so there only Message-ID counts.
	present := map[key]int{}
	var permFlags []imap.Flag
	if t.exists {
		im.mu.Lock()
		unfinished := im.jr.unfinished[t.name]
		im.mu.Unlock()
		if unfinished {
			im.settle(ctx, c, server)
		}
		sel, err := c.Select(server, nil).Wait()
		if folderRefused(err) {
			im.refuseFolder(t, fmt.Errorf("the server refused to open folder %q: %w", server, err))
			return nil
		}
		if err != nil {
			return fmt.Errorf("SELECT %q: %w", server, err)
		}
		permFlags = sel.PermanentFlags
		if sel.NumMessages > 0 {
			inv, err := im.inventory(c)
			if err != nil {
				return err
			}
			present = inv
		}
	}
	var todo []*Item
	im.mu.Lock()
	for _, it := range t.items {
		if im.jr.knows(it) {
			plan.Journal++
			continue
		}
		todo = append(todo, it)
	}
	im.mu.Unlock()
	// Sizes on the wire (CRLF) and Bridge's checks need a first pass.
	drop := []string(nil)
	if im.bridge {
		drop = []string{"X-Pm-Gluon-Id"}
	}
	var preps []prep
	for _, it := range todo {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := it.Open()
		if err != nil {
			im.fail(t, it, err)
			continue
		}
		// a message of a mailmove archive is what a server served: it
		// goes as it is; foreign input is refused when it is not mail
		_, archived := r.(*verified)
		size, hdr, err := measure(r, drop, !archived)
		if err != nil {
			im.fail(t, it, err)
			continue
		}
		h := parseHeader(hdr)
		if im.appendLimit > 0 && size > im.appendLimit {
			im.fail(t, it, fmt.Errorf("%d bytes is over the server's APPENDLIMIT of %d bytes; not sent", size, im.appendLimit))
			continue
		}
		if im.bridge {
			if !strings.EqualFold(t.name, "Drafts") && (!h.hasFrom || !h.hasDate) {
				im.fail(t, it, errors.New("Proton Mail Bridge needs a From and a Date header (except in Drafts); skipped"))
				continue
			}
			if size > bridgeMaxSize {
				im.fail(t, it, fmt.Errorf("%d MiB is over Proton's import limit of 70 MiB; skipped", size>>20))
				continue
			}
		}
		k := key{h.messageID, size}
		if h.messageID == "" && !im.bridge {
			// no Message-ID (Tuta's export has none): recognise it by content
			sum, err := contentHash(it)
			if err != nil {
				im.fail(t, it, err)
				continue
			}
			k = key{"sha256:" + sum, 0}
		}
		if im.bridge {
			k.size = 0
		}
		preps = append(preps, prep{it, size, k})
	}
	// Append only the copies the folder lacks: the journal's imports are
	// counted in present already.
	journaled := map[key]int{}
	im.mu.Lock()
	for _, it := range t.items {
		if im.jr.knows(it) {
			if k, ok := im.jr.keys[it.ID]; ok {
				journaled[k]++
			}
		}
	}
	im.mu.Unlock()
	var send []prep
	for _, p := range preps {
		have := present[p.k] - journaled[p.k]
		im.mu.Lock()
		if have > 0 {
			present[p.k]--
			plan.Present++
			if !o.DryRun {
				im.jr.record(p.it.ID, t.name, p.k, 0)
			}
		} else {
			send = append(send, p)
			plan.Append++
			plan.Bytes += p.size
		}
		im.mu.Unlock()
	}
	if o.DryRun || len(send) == 0 {
		return im.syncJournal()
	}
	if !t.exists {
		err := im.create(c, t.segs)
		if folderRefused(err) {
			im.refuseFolder(t, err)
			return im.syncJournal()
		}
		if err != nil {
			return err
		}
		sel, err := c.Select(server, nil).Wait()
		if folderRefused(err) {
			im.refuseFolder(t, fmt.Errorf("the server refused to open folder %q: %w", server, err))
			return im.syncJournal()
		}
		if err != nil {
			return fmt.Errorf("SELECT %q: %w", server, err)
		}
		permFlags = sel.PermanentFlags
	}
	im.mu.Lock()
	err := im.jr.bracket(t.name, true)
	im.mu.Unlock()
	if err != nil {
		return err
	}
	labelCopies, err := im.send(ctx, c, server, t, send, drop, permFlags)
	if im.o.gmail && ctx.Err() == nil {
		// even after a stop (a daily cap): what was appended gets its labels
		if lerr := im.storeGmailLabels(ctx, server, t, t.gmLabels); err == nil {
			err = lerr
		}
	}
	if err != nil {
		return err
	}
	im.mu.Lock()
	err = im.jr.bracket(t.name, false)
	im.mu.Unlock()
	if err != nil {
		return err
	}
	// Proton labels: a COPY into Labels/X labels the same message. Select
	// the folder again first, so that the session sees what was appended.
	if len(labelCopies) > 0 {
		if _, err := c.Select(server, nil).Wait(); err != nil {
			return fmt.Errorf("SELECT %q: %w", server, err)
		}
	}
	for l, uids := range labelCopies {
		dest := "Labels/" + l
		if err := im.create(c, []string{"Labels", l}); err != nil {
			im.o.Log("creating %s: %v", dest, err)
			continue
		}
		var set imap.UIDSet
		for _, u := range uids {
			set.AddNum(u)
		}
		cd, err := c.Copy(set, dest).Wait()
		if err != nil {
			im.failf(t.name, dest, "labelling %d messages: %v", len(uids), err)
			continue
		}
		if cd != nil && cd.SourceUIDs != nil {
			if n := len(uidList(cd.SourceUIDs)); n != len(uids) {
				im.failf(t.name, dest, "labelled %d of %d messages", n, len(uids))
			}
		}
	}
	return nil
}

// Batch limits for MULTIAPPEND.
const (
	batchMessages = 100
	batchBytes    = 32 << 20
)

// sendBatches appends in MULTIAPPEND batches, a few in flight. A batch the
// server refuses (all or nothing, RFC 3502) is sent again one message at a
// time on c, so that only the culprit fails.
func (im *importer) sendBatches(ctx context.Context, c *account.Conn, ma *account.Appender, server string, t *target, send []prep, drop []string, perm []imap.Flag) error {
	type batch struct {
		ps  []prep
		res *account.BatchResult
	}
	window := make(chan batch, 4)
	var stop onceErr // set by the collector
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range window {
			ma.Wait(b.res)
			var ie *imap.Error
			switch err := b.res.Err; {
			case err == nil:
				for _, p := range b.ps {
					im.appended(t, p, 0)
				}
			case errors.As(err, &ie) && ie.Code != imap.ResponseCodeOverQuota:
				// all or nothing: send this batch again one by one
				for _, p := range b.ps {
					if stop.get() != nil {
						break
					}
					ap, err := im.startAppend(c, server, p, drop, perm)
					var data *imap.AppendData
					if err == nil {
						data, err = ap.Wait()
					}
					if _, _, err := im.result(t, p, data, err); err != nil {
						stop.set(err)
					}
				}
			default:
				_, _, err := im.result(t, b.ps[0], nil, err)
				stop.set(err)
			}
		}
	}()
	var sendErr error
	for i := 0; i < len(send) && sendErr == nil && stop.get() == nil; {
		if sendErr = ctx.Err(); sendErr != nil {
			break
		}
		var ps []prep
		var msgs []account.AppendMsg
		var bytes int64
		var capErr error
		for ; i < len(send) && len(ps) < batchMessages && (len(ps) == 0 || bytes+send[i].size <= batchBytes); i++ {
			p := send[i]
			if capErr = im.o.Budget.Take(p.size); capErr != nil {
				break // --max-bytes-per-day: this batch is the last
			}
			ps = append(ps, p)
			bytes += p.size
			msgs = append(msgs, account.AppendMsg{Size: p.size, Flags: allowedFlags(p.it.Meta.Flags, perm), Date: p.it.Meta.InternalDate,
				Open: func() (io.ReadCloser, error) {
					r, err := p.it.Open()
					if err != nil {
						return nil, err
					}
					pr := newPrepared(r, drop)
					pr.keepHdr = false
					return pr, nil
				}})
		}
		if len(msgs) == 0 {
			sendErr = capErr
			break
		}
		res, err := ma.AppendBatch(server, msgs)
		if err != nil {
			sendErr = fmt.Errorf("appending to %s: %w", t.name, err)
			break
		}
		select {
		case window <- batch{ps, res}:
		default:
			// the collector waits on answers to what is still buffered
			if sendErr = ma.Flush(); sendErr == nil {
				window <- batch{ps, res}
			}
		}
		if capErr != nil && sendErr == nil {
			sendErr = capErr // the batch in flight is answered first
		}
	}
	if err := ma.Flush(); err != nil && sendErr == nil {
		sendErr = err
	}
	close(window)
	<-done
	if err := im.syncJournal(); err != nil && sendErr == nil {
		sendErr = err
	}
	if err := stop.get(); err != nil {
		return err
	}
	return sendErr
}

// onceErr keeps the first error set; it is safe for concurrent use.
type onceErr struct {
	mu  sync.Mutex
	err error
}

func (o *onceErr) set(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err == nil {
		o.err = err
	}
}

func (o *onceErr) get() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// appended records a message the server took.
func (im *importer) appended(t *target, p prep, uid imap.UID) {
	im.mu.Lock()
	im.jr.record(p.it.ID, t.name, p.k, uint32(uid))
	t.plan.Appended++
	im.sum.Appended++
	im.sum.Bytes += p.size
	im.mu.Unlock()
	if im.o.Progress != nil {
		im.o.Progress.Message(t.name, p.size)
	}
}

// result takes the server's answer to one APPEND. A message taken is
// recorded (ok); one the server refuses alone is reported; what must stop
// the folder (over quota, a lost connection) is returned.
func (im *importer) result(t *target, p prep, data *imap.AppendData, err error) (uid imap.UID, ok bool, stop error) {
	if err == nil {
		if data != nil {
			uid = data.UID
		}
		im.appended(t, p, uid)
		return uid, true, nil
	}
	if ce := account.AsCapError(err, "upload", im.o.gmail); ce != nil {
		return 0, false, ce // a daily upload cap (Gmail's [OVERQUOTA])
	}
	var ie *imap.Error
	switch {
	case errors.As(err, &ie) && ie.Code == imap.ResponseCodeOverQuota:
		return 0, false, fmt.Errorf("%w (%s): free space or raise the quota, then run the same import again; it goes on where it stopped", ErrOverQuota, ie.Text)
	case errors.As(err, &ie):
		im.fail(t, p.it, fmt.Errorf("the server refused it: %s", ie.Text))
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("appending %s to %s: %w", p.it.Source, t.name, err)
}

// settle waits until a folder's message count has not moved for two
// seconds (at most 30 s):
// an earlier run stopped while appending, and the server may still be
// saving what that run sent; counting what the folder holds before then
// would append it twice.
func (im *importer) settle(ctx context.Context, c *account.Conn, server string) {
	im.o.Log("%s: an earlier import stopped while appending here; waiting for the server to settle", server)
	c.WaitSettled(ctx, server)
}

// failf reports a label that could not be set (not a message refused).
func (im *importer) failf(source, folder, format string, a ...any) {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.sum.Failed = append(im.sum.Failed, Failure{Source: source, Folder: folder, Kind: KindLabel, Error: fmt.Sprintf(format, a...)})
}

func (im *importer) syncJournal() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.jr.sync()
}

// send appends the messages, pipelined: the next APPEND goes out while the
// server still works on the previous ones; a goroutine collects the
// answers in order. It returns the UIDs to label, by label (Bridge).
func (im *importer) send(ctx context.Context, c *account.Conn, server string, t *target, send []prep, drop []string, perm []imap.Flag) (map[string][]imap.UID, error) {
	if im.raw {
		ma, err := im.o.Account.DialAppender(ctx)
		switch {
		case err == nil:
			im.conns.add(func() { ma.Abort() })
			defer ma.Close()
			return nil, im.sendBatches(ctx, c, ma, server, t, send, drop, perm)
		case !errors.Is(err, account.ErrNoMultiAppend):
			return nil, err
		}
	}
	type inflight struct {
		p  prep
		ap *imapclient.AppendCommand
	}
	window := make(chan inflight, 32)
	labelCopies := map[string][]imap.UID{}
	var stop onceErr // set by the collector
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range window {
			data, err := f.ap.Wait()
			uid, ok, err := im.result(t, f.p, data, err)
			if err != nil {
				stop.set(err)
			}
			if ok && im.o.gmail {
				if ls := im.gmailLabels(f.p.it, t.name); len(ls) > 0 && uid != 0 {
					if t.gmLabels == nil {
						t.gmLabels = map[imap.UID][]string{}
					}
					t.gmLabels[uid] = ls
				} else if len(ls) > 0 {
					im.failf(f.p.it.Source, t.name, "Gmail gave no UID for the appended message (APPENDUID): its labels %q are not set", ls)
				}
			}
			if ok && im.bridge && uid != 0 {
				for _, l := range f.p.it.Meta.Labels {
					if l != "Starred" && !strings.Contains(l, "/") {
						labelCopies[l] = append(labelCopies[l], uid)
					}
				}
			}
		}
	}()
	var sendErr error
	for _, p := range send {
		if sendErr = ctx.Err(); sendErr != nil {
			break
		}
		if stop.get() != nil {
			break
		}
		if sendErr = im.o.Budget.Take(p.size); sendErr != nil {
			break // --max-bytes-per-day
		}
		ap, err := im.startAppend(c, server, p, drop, perm)
		if err != nil {
			var ie *InputError
			if errors.As(err, &ie) {
				im.fail(t, p.it, err)
				if ap == nil {
					continue
				}
			}
			if ap == nil {
				sendErr = err
				break
			}
			// the literal is broken: the connection cannot be trusted
			c.Close()
			sendErr = err
			break
		}
		window <- inflight{p, ap}
	}
	close(window)
	<-done
	if err := im.syncJournal(); err != nil && sendErr == nil {
		sendErr = err
	}
	if err := stop.get(); err != nil {
		return nil, err
	}
	return labelCopies, sendErr
}

// fail reports a message refused, in its folder's tally.
func (im *importer) fail(t *target, it *Item, err error) {
	msg := err.Error()
	var ie *InputError
	if errors.As(err, &ie) && strings.HasPrefix(it.Source, ie.File) {
		msg = ie.Msg // the source names the file already
	}
	im.refuse(t.plan, it.Source, t.name, 1, KindMessage, msg)
}

// inventory returns the (Message-ID, size) multiset of the selected folder.
func (im *importer) inventory(c *account.Conn) (map[key]int, error) {
	var all imap.UIDSet
	all.AddRange(1, 0)
	sec := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-Id"}}
	msgs, err := c.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil {
		return nil, fmt.Errorf("listing what the target folder holds: %w", err)
	}
	out := map[key]int{}
	var noID []uint32
	for _, m := range msgs {
		var hdr []byte
		for _, bs := range m.BodySection {
			hdr = bs.Bytes
		}
		h := parseHeader(append(hdr, '\r', '\n'))
		k := key{h.messageID, m.RFC822Size}
		if im.bridge {
			k.size = 0
		}
		if h.messageID == "" && !im.bridge {
			noID = append(noID, uint32(m.UID))
			continue
		}
		out[k]++
	}
	if len(noID) > 0 {
		// messages without Message-ID are recognised by content
		var set imap.UIDSet
		for _, u := range noID {
			set.AddNum(imap.UID(u))
		}
		fc := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for m := fc.Next(); m != nil; m = fc.Next() {
			for it := m.Next(); it != nil; it = m.Next() {
				if bs, ok := it.(imapclient.FetchItemDataBodySection); ok && bs.Literal != nil {
					h := sha256.New()
					p := newPrepared(io.NopCloser(bs.Literal), nil)
					if _, err := io.Copy(h, p); err == nil {
						out[key{"sha256:" + hex.EncodeToString(h.Sum(nil)), 0}]++
					}
				}
			}
		}
		if err := fc.Close(); err != nil {
			return nil, fmt.Errorf("reading messages without Message-ID: %w", err)
		}
	}
	return out, nil
}

// contentHash is the SHA-256 of a message as it goes on the wire (CRLF).
func contentHash(it *Item) (string, error) {
	r, err := it.Open()
	if err != nil {
		return "", err
	}
	p := newPrepared(r, nil)
	defer p.Close()
	h := sha256.New()
	if _, err := io.Copy(h, p); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// create makes a folder and its parents, top down.
func (im *importer) create(c *account.Conn, segs []string) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	for i := range segs {
		p := strings.Join(segs[:i+1], "/")
		if _, ok := im.byName[p]; ok {
			continue
		}
		if im.bridge && (p == "Folders" || p == "Labels") {
			continue
		}
		name := im.serverName(segs[:i+1])
		if err := c.Create(name, nil).Wait(); err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
				// A server without the ALREADYEXISTS code: the folder is
				// fine if LIST shows it now (made by another connection).
				if l, lerr := c.List("", name, nil).Collect(); lerr != nil || len(l) == 0 {
					return fmt.Errorf("creating folder %q: %w", name, err)
				}
			}
		}
		im.byName[p] = &account.Folder{Name: name, Segments: segs[:i+1]}
	}
	return nil
}

// startAppend sends one message, streaming it, with its flags and date,
// without waiting for the server's answer.
func (im *importer) startAppend(c *account.Conn, server string, p prep, drop []string, perm []imap.Flag) (*imapclient.AppendCommand, error) {
	it := p.it
	r, err := it.Open()
	if err != nil {
		return nil, &InputError{File: it.Source, Msg: err.Error()}
	}
	pr := newPrepared(r, drop)
	pr.keepHdr = false
	defer pr.Close()
	flags := it.Meta.Flags
	if im.o.gmail {
		flags = gmailFlags(it)
	}
	opts := &imap.AppendOptions{Flags: allowedFlags(flags, perm)}
	if !it.Meta.InternalDate.IsZero() {
		opts.Time = it.Meta.InternalDate
	}
	ap := c.Append(server, p.size, opts)
	n, err := io.Copy(ap, pr)
	if err == nil && n != p.size {
		err = &InputError{File: it.Source, Msg: fmt.Sprintf("changed while it was imported (%d bytes, expected %d)", n, p.size)}
	}
	if err != nil {
		// The message is not what was measured (or cannot be read to its
		// end): close the connection before the command is complete, so
		// that the server never appends it.
		c.Close()
	}
	if cerr := ap.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ap, err
	}
	return ap, nil
}

// allowedFlags keeps the flags the folder can store: never \Recent; the
// five standard system flags always; other flags and keywords as
// PERMANENTFLAGS allows (\* for any keyword), all when it was not sent.
func allowedFlags(flags []string, perm []imap.Flag) []imap.Flag {
	keywords := perm == nil
	permSet := map[string]bool{}
	for _, f := range perm {
		if f == imap.FlagWildcard {
			keywords = true
		}
		permSet[strings.ToLower(string(f))] = true
	}
	var out []imap.Flag
	seen := map[string]bool{}
	for _, f := range flags {
		lf := strings.ToLower(f)
		if lf == `\recent` || seen[lf] || f == "" {
			continue
		}
		seen[lf] = true
		if !validFlag(f) {
			continue // would be a syntax error on the wire
		}
		switch {
		case perm == nil, permSet[lf], isSystemFlag(lf):
			// The standard system flags are always sent: a server that
			// cannot keep one ignores it (RFC 3501 6.3.11).
		case strings.HasPrefix(f, `\`):
			continue
		case !keywords:
			continue
		}
		out = append(out, imap.Flag(f))
	}
	return out
}

// journal records what an import appended, so that an interrupted import
// resumes without asking the server about everything again.
type journal struct {
	f    *os.File
	w    *bufio.Writer
	done map[string]bool
	keys map[string]key
	n    int
	// unfinished are target folders an earlier run was appending to when it
	// stopped: the server may still be saving what it sent last.
	unfinished map[string]bool
}

type journalLine struct {
	ID     string `json:"id,omitempty"`
	Folder string `json:"folder"`
	// Sending and Finished bracket the appends into a folder.
	Sending  bool   `json:"sending,omitempty"`
	Finished bool   `json:"finished,omitempty"`
	MsgID    string `json:"message_id,omitempty"`
	Size     int64  `json:"size"`
	UID      uint32 `json:"uid,omitempty"`
}

// sourceIdentity resolves a source: its absolute path with every symlink
// evaluated, and what it is (device and inode, see fileIdentity). The same
// source typed as in/odd, ./in/odd, /abs/path/in/odd or through a symlink
// is one source; a file put in the place of another at the same path is
// another source.
func sourceIdentity(source string) (canonical, ident string, err error) {
	abs, err := filepath.Abs(source)
	if err != nil {
		return "", "", err
	}
	canonical, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", err
	}
	fi, err := os.Stat(canonical)
	if err != nil {
		return "", "", err
	}
	return canonical, fileIdentity(fi), nil
}

// openJournal opens the journal of importing a source into target. The
// journal is keyed by the target's URL and by what the source is: its
// resolved path and its identity (sourceIdentity), not the path as typed.
// Standard input ("-") has a journal that is written, never read back.
func openJournal(dir, target, source, canonical, ident string) (*journal, error) {
	j := &journal{done: map[string]bool{}, keys: map[string]key{}, unfinished: map[string]bool{}}
	if dir == "" {
		return j, nil
	}
	name := canonical + "\x00" + ident
	if source == "-" {
		name = "-"
	}
	sum := sha256.Sum256([]byte("v2\x00" + target + "\x00" + name))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, hex.EncodeToString(sum[:8])+".jsonl")
	if source != "-" {
		if f, err := os.Open(p); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var l journalLine
				if json.Unmarshal(sc.Bytes(), &l) != nil {
					continue
				}
				switch {
				case l.Sending:
					j.unfinished[l.Folder] = true
				case l.Finished:
					delete(j.unfinished, l.Folder)
				default:
					j.done[l.ID] = true
					j.keys[l.ID] = key{l.MsgID, l.Size}
				}
			}
			f.Close()
		}
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	j.f, j.w = f, bufio.NewWriter(f)
	return j, nil
}

// knows reports whether the journal recorded this message as imported: its
// ID (a file, or a file and offset) is there, and it is the message the
// journal recorded: a message whose Message-ID (as the scan read it) is
// not the recorded one is another message at the same place (an mbox
// rewritten by its mail program), and goes through the server-side check.
func (j *journal) knows(it *Item) bool {
	if !j.done[it.ID] {
		return false
	}
	k, ok := j.keys[it.ID]
	if !ok || it.Meta.MessageID == "" {
		return true // nothing to compare (no Message-ID read by the scan)
	}
	return k.id == messageID(it.Meta.MessageID)
}

func (j *journal) record(id, folder string, k key, uid uint32) {
	j.done[id] = true
	j.keys[id] = k
	if j.w == nil {
		return
	}
	b, _ := json.Marshal(journalLine{ID: id, Folder: folder, MsgID: k.id, Size: k.size, UID: uid})
	j.w.Write(append(b, '\n'))
	j.n++
	if j.n%200 == 0 {
		j.sync()
	}
}

// bracket writes a durable Sending (start) or Finished line for a folder.
func (j *journal) bracket(folder string, start bool) error {
	if j.w == nil {
		return nil
	}
	b, _ := json.Marshal(journalLine{Folder: folder, Sending: start, Finished: !start})
	j.w.Write(append(b, '\n'))
	return j.sync()
}

func (j *journal) sync() error {
	if j.w == nil {
		return nil
	}
	if err := j.w.Flush(); err != nil {
		return err
	}
	return j.f.Sync()
}

func (j *journal) Close() error {
	if j.f == nil {
		return nil
	}
	err := j.sync()
	j.f.Close()
	return err
}

// validFlag reports whether f is an IMAP flag: a keyword atom, or \ and an
// atom.
func validFlag(f string) bool {
	a := strings.TrimPrefix(f, `\`)
	if a == "" || strings.HasPrefix(a, `\`) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

func isSystemFlag(lf string) bool {
	switch lf {
	case `\seen`, `\answered`, `\flagged`, `\deleted`, `\draft`:
		return true
	}
	return false
}

func uidList(s imap.UIDSet) []imap.UID {
	uids, _ := s.Nums()
	return uids
}
