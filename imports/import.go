package imports

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
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
	// CheckMissing are what the check at the end did not find at the
	// target by key (Message-ID and size, or the header's SHA-256 and
	// size): one line each, folder first.
	CheckMissing []string `json:"check_missing,omitempty"`
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
	src := &FilesSource{Path: o.Source, Format: o.Format, Identities: o.Identities, LabelsAsFolders: o.LabelsAsFolders}
	defer src.Close()
	err := src.Scan(ctx)
	sum.Failed = append(sum.Failed, src.Failures()...)
	if err != nil {
		return sum, err
	}
	if o.Source != "-" {
		sum.Source = src.Canonical()
	}
	c, err := o.Account.Dial(ctx)
	if err != nil {
		return sum, err
	}
	caps := c.Caps()
	sink := &IMAPSink{Account: o.Account, Conn: c, Map: o.Map, Prefix: o.Prefix, Folder: o.Folder, Budget: o.Budget, Verb: "import"}
	defer context.AfterFunc(ctx, sink.Abort)()
	defer sink.Close()
	if err := sink.Start(ctx); err != nil {
		return sum, err
	}
	bridge := sink.Bridge()
	sum.Bridge = bridge
	o.gmail = sink.Gmail()
	sum.Gmail = o.gmail
	src.GmailTarget = o.gmail
	folders, err := src.Folders(ctx)
	if err != nil {
		return sum, err
	}
	// the target folders that exist before the run (the plan's Create)
	existed := map[string]bool{}
	for _, f := range folders {
		if t, why := sink.Target(f); why == "" {
			existed[t] = sink.HasFolder(t)
		}
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
	if caps.Has(imap.CapLiteralPlus) && caps.Has(imap.CapMultiAppend) && !bridge && !o.DryRun {
		// each folder appends on a second connection: stay within the limit
		workers = max(1, workers/2)
	}
	journal := ""
	if o.JournalDir != "" {
		h := sha256.Sum256([]byte("v3\x00" + o.Account.URL.String() + "\x00" + src.Identity()))
		journal = filepath.Join(o.JournalDir, hex.EncodeToString(h[:8])+".jsonl")
	}
	// labels the scan did not make keywords of (Proton labels of an
	// archive of Bridge) are keywords of the copies, as migrate makes
	// them; a Bridge or Gmail target takes labels itself (the engine
	// leaves them out of the flags there)
	mode := engine.LabelsKeywords
	if o.LabelsAsFolders {
		mode = engine.LabelsSkip
	}
	eo := engine.Options{Source: src, Sink: sink, JournalPath: journal, Labels: mode, DryRun: o.DryRun,
		Connections: workers, Progress: o.Progress, Log: o.Log}
	esum, runErr := engine.Run(ctx, eo)
	if ctx.Err() != nil {
		// the connections were closed under the run: that is why it stopped
		runErr = ctx.Err()
	}
	imp := &importer{o: o, sum: sum, plans: map[string]*FolderPlan{}}
	if esum != nil {
		sum.Appended, sum.Bytes = esum.Copied, esum.Bytes
		imp.tally(src, sink, esum, existed)
	} else {
		// nothing was copied: every message is not done
		for _, f := range folders {
			p := imp.planFor("\x00"+f.Name, FolderPlan{Sources: f.Name})
			p.Messages += int(f.Messages)
		}
	}
	sum.Elapsed = time.Since(start)
	if err := imp.finish(src.Seen(), runErr == nil); err != nil && runErr == nil {
		runErr = err
	}
	return sum, runErr
}

// tally turns the engine's summary into the import's: one entry per target
// folder (or per source folder whose messages have none), with the
// messages the input could not give and those the target refused.
func (im *importer) tally(src *FilesSource, sink *IMAPSink, es *engine.Summary, existed map[string]bool) {
	type fkey struct {
		folder string
		uid    uint32
	}
	byFolder := map[string]*engine.FolderSummary{}
	sources := map[string]map[string]bool{}
	planOf := func(fs *engine.FolderSummary) *FolderPlan {
		if fs.Target == "" {
			return im.planFor("\x00"+fs.Source, FolderPlan{Sources: fs.Source})
		}
		p := im.planFor(fs.Target, FolderPlan{Folder: fs.Target, Create: !existed[fs.Target]})
		if sources[fs.Target] == nil {
			sources[fs.Target] = map[string]bool{}
		}
		sources[fs.Target][fs.Source] = true
		return p
	}
	for _, fs := range es.Folders {
		byFolder[fs.Source] = fs
		p := planOf(fs)
		p.Messages += fs.Messages
		p.Appended += fs.Copied
		p.Append += fs.Copy
		p.Bytes += fs.CopyBytes
		p.Journal += fs.Known
		p.Present += fs.Present - fs.Known
	}
	// messages refused: by the input (unreadable, not mail IMAP can
	// carry), by the target (its words, its rules), once each
	refused := map[fkey]bool{}
	refusedIn := map[string]int{}
	for folder, m := range src.failedMap() {
		fs := byFolder[folder]
		if fs == nil {
			continue
		}
		for uid, f := range m {
			refused[fkey{folder, uid}] = true
			refusedIn[folder]++
			f.Folder = fs.Target
			im.refuse(planOf(fs), f.Source, fs.Target, 1, KindMessage, f.Error)
		}
	}
	var folderFails []engine.Failure
	for _, f := range es.Failed {
		fs := byFolder[f.Folder]
		if fs == nil {
			continue
		}
		if f.UID == 0 {
			folderFails = append(folderFails, f)
			continue
		}
		if refused[fkey{f.Folder, f.UID}] {
			continue
		}
		refused[fkey{f.Folder, f.UID}] = true
		refusedIn[f.Folder]++
		source := f.Folder
		if it := src.ItemOf(f.Folder, f.UID); it != nil {
			source = it.Source
		}
		im.refuse(planOf(fs), source, fs.Target, 1, KindMessage, strings.TrimPrefix(f.Error, "the target refused it: "))
	}
	for _, f := range folderFails {
		fs := byFolder[f.Folder]
		p := planOf(fs)
		if fs.Target == "" {
			// the target's rules give its messages no folder: each refused
			for i := 1; i <= fs.Messages; i++ {
				source := f.Folder
				if it := src.ItemOf(f.Folder, uint32(i)); it != nil {
					source = it.Source
				}
				im.refuse(p, source, f.Folder, 1, KindMessage, f.Error)
			}
			continue
		}
		n := fs.Messages - (fs.Copied + fs.Present + refusedIn[f.Folder])
		if im.o.DryRun {
			n = fs.Messages - (fs.Copy + fs.Present + refusedIn[f.Folder])
		}
		im.o.Log("%s: %s", fs.Target, f.Error)
		im.refuse(p, "folder "+fs.Source, fs.Target, n, KindFolder, fmt.Sprintf("%s; its %d messages were not imported, every other folder was (use --map to choose another name)", f.Error, n))
	}
	for _, f := range sink.Unlabelled {
		im.failLabel(f.Folder, f.Error)
	}
	for _, f := range es.Check.Missing {
		// the end check did not find a message's key at the target (a
		// message without Message-ID whose header the server does not
		// parse as mailmove does): said, not a failure of the tally
		im.o.Log("check: %s: %s", f.Folder, f.Error)
		im.sum.CheckMissing = append(im.sum.CheckMissing, f.Folder+": "+f.Error)
	}
	for t, ss := range sources {
		var l []string
		for s := range ss {
			l = append(l, s)
		}
		sort.Strings(l)
		im.plans[t].Sources = strings.Join(l, ", ")
	}
}

// failLabel reports what is not a message refused (a label not set).
func (im *importer) failLabel(folder, msg string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.sum.Failed = append(im.sum.Failed, Failure{Source: folder, Folder: folder, Kind: KindLabel, Error: msg})
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

// importer keeps an import's tally.
type importer struct {
	o     Options
	mu    sync.Mutex // guards sum and plans
	sum   *Summary
	delim rune
	plans map[string]*FolderPlan // the tally, by target folder
}

// serverName turns a "/"-separated path into the server's name.
func (im *importer) serverName(segs []string) string {
	s := &IMAPSink{delim: im.delim}
	return s.serverName(segs)
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
