// Package verify compares two mail stores, each an IMAP account (Proton
// Mail Bridge included) or a local copy (a mailmove archive, an mbox file
// or tree, a folder of .eml files, a Maildir), folder by folder through the
// folder mapping of import and migrate, and reports what is missing,
// extra or different, by folder and Message-ID.
//
// The cheap comparison (the default) is the count and the multiset of
// (Message-ID, size) of every folder, the key import uses to recognise
// what a target holds; a message without Message-ID is keyed by the
// SHA-256 of its bytes. Options.Deep compares the SHA-256 of every message
// after CRLF normalisation, header fields that Proton Mail Bridge adds
// (X-Pm-*, see IgnoredFields) left out; Options.Flags compares flags and
// keywords too.
//
// Both sides are read through the copy engine's sources, as the copy verbs
// read them: an account through export.IMAPSource (export's plan, with
// Proton Mail Bridge's rules and Gmail's model; a target account AsIs,
// every folder under its own name), local input through
// imports.FilesSource (an archive by its index, engine.Indexer). What verify
// adds is the comparison.
//
// Nothing is ever changed: an account's folders are opened with EXAMINE
// and its messages read with BODY.PEEK, an archive is opened read-only.
// Message bodies are streamed into the hash, so memory stays flat whatever
// their size.
package verify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/imports"
)

// IgnoredFields are the header fields left out of the SHA-256 that
// Options.Deep compares, as name prefixes (case does not matter): every
// field Proton Mail Bridge adds to the messages it serves (X-Pm-Gluon-Id,
// which gluon gives each message anew in every Bridge database and which
// import strips before an APPEND into Bridge; X-Pm-Internal-Id,
// X-Pm-External-Id, X-Pm-Date, X-Pm-Origin, X-Pm-Content-Encryption,
// X-Pm-Spamscore, ...).
var IgnoredFields = []string{"X-Pm-"}

// Side is one of the two stores compared: an account, or a local path.
type Side struct {
	// Account, if set, is an IMAP account (bridge:// URLs, or a server
	// that says it is Bridge, get Proton Mail Bridge's rules).
	Account *account.Config
	// Conn, if set, is a connection to Account already logged in: Compare
	// uses it first (and dials more only when it needs them) and leaves it
	// open; the connections Compare dials are logged out at the end.
	Conn *account.Conn
	// Path, if Account is nil, is a mailmove archive, an mbox file or
	// tree, a folder of .eml files or a Maildir, read as import reads it.
	Path string
	// Format forces the format of Path (as import's --format); empty
	// detects it.
	Format imports.Format
	// Identities decrypt Path when it is an encrypted mailmove archive
	// (--identity); without them such an archive is an
	// archive.EncryptedError.
	Identities []age.Identity
}

// String names the side for reports: the account URL or the path.
func (s Side) String() string {
	if s.Account != nil && s.Account.URL != nil {
		return s.Account.URL.String()
	}
	return s.Path
}

// Options configure a comparison.
type Options struct {
	// Deep compares the SHA-256 of every message (after CRLF
	// normalisation, IgnoredFields left out), not only (Message-ID, size).
	Deep bool
	// Flags compares flags and keywords of the messages found on both
	// sides (\Recent left out; case does not matter).
	Flags bool
	// Include and Exclude select the source folders as export's --folder
	// and --exclude do (glob patterns, "/" between levels; a plain name
	// also selects its subfolders).
	Include, Exclude []string
	// Only, if not nil, keeps only these source folders (exact names, "/"
	// between levels) of those Include and Exclude select: migrate checks
	// the folders its run looked at.
	Only []string
	// Prefix and Map place the source folders on the target as import
	// does (--prefix, --map SRC=DST); on an account target, special-use
	// folders (Sent, Trash, ...) go where the target's special use says.
	Prefix string
	Map    map[string]string
	// Into, if set, is the one target folder of every source folder (the
	// copy was made with import --folder).
	Into string
	// Labels is what the copy did with the labels of an account source
	// (Proton Mail Bridge, Gmail), as migrate's --labels: by default
	// (LabelsKeywords) a message's labels are keywords of its copy on an
	// account target, Starred its \Flagged, so Flags expects them there;
	// with LabelsFolders Bridge's Labels/... are source folders.
	Labels engine.LabelMode
	// AllowExtra: messages found only on the target are listed, but do not
	// count as a difference (a backup archive keeps what the server
	// deleted).
	AllowExtra bool
	// Log, if set, is told what is being read.
	Log func(format string, args ...any)
}

// Entry is one message as a side holds it.
type Entry struct {
	// Folder is the side's folder ("/" between levels).
	Folder string `json:"folder"`
	// UID is the message's UID on an account side.
	UID uint32 `json:"uid,omitempty"`
	// Source is where a local side holds the message (file, offset).
	Source    string `json:"source,omitempty"`
	MessageID string `json:"message_id"`
	// Size is the message's size: RFC822.SIZE on an account, the size the
	// index records in an archive, the size with CRLF line endings for
	// other local input.
	Size    int64  `json:"size"`
	Subject string `json:"subject,omitempty"`
	// Date is the Date header when it can be read, else the arrival date.
	Date  time.Time `json:"date"`
	Flags []string  `json:"flags"`
	// Labels are the Proton labels of the message (Bridge accounts, and
	// archives, which record them); read only with Options.Flags.
	Labels []string `json:"labels,omitempty"`
	// SHA256 is the hash Deep compares, when it was computed.
	SHA256 string `json:"sha256,omitempty"`

	at *ref // where it was read from
}

// Difference is a message found on both sides, but not the same.
type Difference struct {
	// What is "content" (same Message-ID and size, other SHA-256) or
	// "flags".
	What string `json:"what"`
	From Entry  `json:"from"`
	To   Entry  `json:"to"`
}

// FolderReport is the comparison of one target folder with the source
// folders that map to it.
type FolderReport struct {
	// Folder is the target folder ("/" between levels).
	Folder string `json:"folder"`
	// From are the source folders mapped to it.
	From []string `json:"from"`
	// Exists is false when the target has no such folder.
	Exists bool `json:"exists"`
	// Messages and TargetMessages are the counts on each side.
	Messages       int          `json:"messages"`
	TargetMessages int          `json:"target_messages"`
	Missing        []Entry      `json:"missing"`
	Extra          []Entry      `json:"extra"`
	Different      []Difference `json:"different"`
}

// Problem is something that could not be compared: a folder or a message
// that could not be read (the comparison is incomplete), or source
// messages the target's rules never take (Bridge).
type Problem struct {
	// Side is "from" or "to".
	Side   string `json:"side"`
	Folder string `json:"folder"`
	UID    uint32 `json:"uid,omitempty"`
	Source string `json:"source,omitempty"`
	Error  string `json:"error"`
}

// Report is the result of Compare.
type Report struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Deep  bool   `json:"deep"`
	Flags bool   `json:"flags"`
	// Folders are the target folders compared, sorted.
	Folders []FolderReport `json:"folders"`
	// Messages and TargetMessages are the messages compared on each side;
	// Matched those found on both.
	Messages       int `json:"messages"`
	TargetMessages int `json:"target_messages"`
	Matched        int `json:"matched"`
	Missing        int `json:"missing"`
	Extra          int `json:"extra"`
	Different      int `json:"different"`
	// AllowExtra is Options.AllowExtra.
	AllowExtra bool `json:"allow_extra"`
	// Problems are folders and messages that could not be read.
	Problems []Problem `json:"problems"`
	// Skipped are source messages the target's rules never take (Proton
	// Mail Bridge as a target: nested labels), not compared.
	Skipped []Problem `json:"skipped"`
	// NotCompared are target folders no source folder maps to.
	NotCompared []string `json:"not_compared"`
	// Notes say what could not be compared the usual way, and why.
	Notes   []string      `json:"notes"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Differs reports whether something is missing on the target, different,
// or (unless AllowExtra) extra.
func (r *Report) Differs() bool {
	return r.Missing > 0 || r.Different > 0 || (r.Extra > 0 && !r.AllowExtra)
}

// OK reports whether everything is there: no difference, and nothing that
// could not be read.
func (r *Report) OK() bool { return !r.Differs() && len(r.Problems) == 0 }

// Summary is the report in one line.
func (r *Report) Summary() string {
	what := "(Message-ID, size)"
	if r.Deep {
		what = "SHA-256"
	}
	if r.Flags {
		what += " and flags"
	}
	s := fmt.Sprintf("%d folders, %d messages -> %d compared by %s: %d matched, %d missing, %d extra, %d different",
		len(r.Folders), r.Messages, r.TargetMessages, what, r.Matched, r.Missing, r.Extra, r.Different)
	if len(r.Problems) > 0 {
		s += fmt.Sprintf(", %d not readable", len(r.Problems))
	}
	if r.AllowExtra && r.Extra > 0 {
		s += " (extra messages allowed)"
	}
	return s
}

// key is what the cheap comparison matches on, as import's inventory.
type key struct {
	id   string
	size int64
}

// entry is a message being compared.
type entry struct {
	Entry
	bad bool // could not be read: left out
}

// source is a source folder as the engine's source lists it (a Gmail
// account's folder may be read from several mailboxes: one engine folder
// each).
type source struct {
	name    string
	role    string
	allMail bool
	folders []*engine.Folder
	target  string
}

// store is one side, read through the engine's source for it: the IMAP
// source export and migrate read (export.IMAPSource, with Bridge's plan and
// Gmail's model; a target read back as it is, AsIs), or the files source
// import and migrate read (imports.FilesSource).
type store struct {
	side    Side
	label   string // "from" or "to"
	src     engine.Source
	acct    *export.IMAPSource
	files   *imports.FilesSource
	folders []*engine.Folder
	bridge  bool
	gmail   bool // a Gmail account (X-GM-EXT-1)
	archive bool // a mailmove archive: what its index records
	labels  bool // set Entry.Labels (Options.Flags, both sides know labels)
	// keywords, on an account source whose target account keeps labels as
	// keywords, is how its labels became keywords of the copies (the
	// engine's rule): Entry.Flags are the flags the copy should have
	keywords engine.LabelMode
}

// ref is the engine folder and UID an entry was read from (for its
// description).
type ref struct {
	f   *engine.Folder
	uid uint32
}

// Compare compares a (the source) with b (the target). It returns an
// error when a side cannot be read at all (a failed login, a path that is
// not there, ctx ended); folders and messages that cannot be read are
// Problems of the report.
func Compare(ctx context.Context, a, b Side, o Options) (*Report, error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	r := &Report{From: a.String(), To: b.String(), Deep: o.Deep, Flags: o.Flags, AllowExtra: o.AllowExtra,
		Folders: []FolderReport{}, Problems: []Problem{}, Skipped: []Problem{}, NotCompared: []string{}, Notes: []string{}}
	sa, err := openStore(ctx, a, "from", o)
	if err != nil {
		return r, err
	}
	defer sa.close()
	sb, err := openStore(ctx, b, "to", o)
	if err != nil {
		return r, err
	}
	defer sb.close()
	// Ctrl-C: the connections are closed under the reads, so that Compare
	// returns at once whatever it waits for
	for _, st := range []*store{sa, sb} {
		if st.acct != nil {
			defer context.AfterFunc(ctx, st.acct.Abort)()
		}
	}
	sources := sa.sources(o)
	// Proton labels are compared with the flags where both sides know
	// them: a Bridge account, a mailmove archive.
	sa.labels = o.Flags && sa.knowsLabels() && sb.knowsLabels()
	sb.labels = sa.labels
	// Proton Mail Bridge rebuilds the messages it imports: on a Bridge
	// target only Message-ID is compared, as import does.
	idOnly := sb.acct != nil && sb.bridge
	if idOnly {
		r.Notes = append(r.Notes, "the target is Proton Mail Bridge, which rebuilds the messages it imports: messages are matched by Message-ID alone, sizes and contents are not compared, nor keywords")
	}
	// the target folder of every source folder: an account's names come
	// from the engine's sink, as migrate and import place messages
	byTarget := map[string][]*source{}
	var targets []string
	var sink engine.Sink
	if sb.acct != nil {
		ms := imports.MappingSink(sb.acct.Listing(), sb.bridge, sb.gmail, o.Map, o.Prefix)
		ms.Folder = o.Into
		sink = ms
		if sa.acct != nil && !ms.TakesLabels() {
			// the flags a copy should have: the source's, and its labels
			// as keywords, as the engine sets them
			sa.keywords = o.Labels
			if sa.keywords == "" {
				sa.keywords = engine.LabelsKeywords
			}
		}
	}
	for _, s := range sources {
		if sink != nil {
			name, skip := sink.Target(&engine.Folder{Name: s.name, Role: s.role, AllMail: s.allMail})
			if skip != "" {
				r.Skipped = append(r.Skipped, Problem{Side: "from", Folder: s.name, Error: skip})
				continue
			}
			s.target = name
		} else {
			s.target = s.name
			if m := o.Map[s.name]; m != "" {
				s.target = m
			}
			if o.Prefix != "" {
				s.target = strings.TrimSuffix(o.Prefix, "/") + "/" + s.target
			}
			if o.Into != "" {
				s.target = o.Into
			}
		}
		if byTarget[s.target] == nil {
			targets = append(targets, s.target)
		}
		byTarget[s.target] = append(byTarget[s.target], s)
	}
	sort.Strings(targets)
	r.NotCompared = sb.otherFolders(byTarget)

	needHash := func(e *entry) bool { return o.Deep && !idOnly || e.MessageID == "" && !idOnly }
	// Read both sides at once, each folder after folder.
	fromEntries := map[string][]*entry{}
	toEntries := map[string][]*entry{}
	exists := map[string]bool{}
	var fromProblems, toProblems []Problem
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() {
		defer wg.Done()
		for _, t := range targets {
			for _, s := range byTarget[t] {
				o.Log("reading %s %s", a, s.name)
				for _, f := range s.folders {
					es, probs, err := sa.read(ctx, f, s.name, needHash)
					if err != nil {
						errA = err
						return
					}
					fromEntries[t] = append(fromEntries[t], es...)
					fromProblems = append(fromProblems, probs...)
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		for _, t := range targets {
			o.Log("reading %s %s", b, t)
			for _, f := range sb.folders {
				if f.Name != t {
					continue
				}
				exists[t] = true
				es, probs, err := sb.read(ctx, f, t, needHash)
				if err != nil {
					errB = err
					return
				}
				toEntries[t] = append(toEntries[t], es...)
				toProblems = append(toProblems, probs...)
			}
		}
	}()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if err := errors.Join(errA, errB); err != nil {
		return r, err
	}
	// what could not be read: input that is not mail, and (local sides)
	// messages that could not be read, as import reports them
	r.Problems = append(r.Problems, sa.inputProblems()...)
	r.Problems = append(r.Problems, sb.inputProblems()...)
	r.Problems = append(append(r.Problems, fromProblems...), toProblems...)
	for _, t := range targets {
		fr := FolderReport{Folder: t, Exists: exists[t], Missing: []Entry{}, Extra: []Entry{}, Different: []Difference{}}
		for _, s := range byTarget[t] {
			fr.From = append(fr.From, s.name)
		}
		compareFolder(&fr, fromEntries[t], toEntries[t], o, idOnly, sa.labels)
		r.Messages += fr.Messages
		r.TargetMessages += fr.TargetMessages
		r.Missing += len(fr.Missing)
		r.Extra += len(fr.Extra)
		r.Different += len(fr.Different)
		for _, d := range fr.Different {
			if d.What == "content" {
				r.Matched--
			}
		}
		r.Matched += fr.Messages - len(fr.Missing)
		r.Folders = append(r.Folders, fr)
	}
	// what a human needs to find the messages reported: subject, Date
	// header, where a local side holds them
	var fromRep, toRep []*Entry
	for i := range r.Folders {
		fr := &r.Folders[i]
		for j := range fr.Missing {
			fromRep = append(fromRep, &fr.Missing[j])
		}
		for j := range fr.Extra {
			toRep = append(toRep, &fr.Extra[j])
		}
		for j := range fr.Different {
			fromRep = append(fromRep, &fr.Different[j].From)
			toRep = append(toRep, &fr.Different[j].To)
		}
	}
	if err := sa.describe(ctx, fromRep); err != nil {
		return r, err
	}
	if err := sb.describe(ctx, toRep); err != nil {
		return r, err
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

// openStore opens a side through the engine's source for it and lists its
// folders: a source account as export plans it (Include, Exclude), a
// target account as it is; local input as import scans it.
func openStore(ctx context.Context, s Side, label string, o Options) (*store, error) {
	st := &store{side: s, label: label}
	if s.Account != nil {
		mode := o.Labels
		if mode == "" {
			mode = engine.LabelsKeywords
		}
		src := &export.IMAPSource{Account: s.Account, Conn: s.Conn, KeepConn: s.Conn != nil, LabelMode: mode, Log: o.Log}
		if label == "from" {
			src.Include, src.Exclude = o.Include, o.Exclude
		} else {
			src.AsIs = true
		}
		st.src, st.acct = src, src
		folders, err := src.Folders(ctx)
		if err != nil {
			src.Close()
			return nil, fmt.Errorf("reading the folders of %s: %w", s, err)
		}
		st.folders = folders
		st.bridge = src.Bridge()
		st.gmail = src.GmailAccount()
		return st, nil
	}
	if s.Path == "" {
		return nil, &account.UsageError{Msg: "--" + label + ": give an account URL or the path of an archive, mbox, .eml folder or Maildir"}
	}
	if _, err := os.Stat(s.Path); errors.Is(err, fs.ErrNotExist) {
		return nil, &account.UsageError{Msg: fmt.Sprintf("--%s %s: no such file or folder, and not an account URL (imaps://, imap://, bridge://)", label, s.Path)}
	} else if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", label, s.Path, err)
	}
	if s.Format == imports.FormatArchive || s.Format == imports.FormatAuto {
		if _, err := os.Stat(filepath.Join(s.Path, archive.StateDir, "archive.json")); err == nil {
			st.archive = true
		}
	}
	files := &imports.FilesSource{Path: s.Path, Format: s.Format, Identities: s.Identities}
	st.src, st.files = files, files
	folders, err := files.Folders(ctx)
	if err != nil {
		files.Close()
		return nil, fmt.Errorf("reading %s: %w", s.Path, err)
	}
	st.folders = folders
	return st, nil
}

// knowsLabels reports whether the side records Proton labels.
func (st *store) knowsLabels() bool { return st.acct != nil && st.bridge || st.archive }

func (st *store) close() { st.src.Close() }

// inputProblems are what a local side could not read, as import reports
// it: input that is not mail, messages that could not be read.
func (st *store) inputProblems() []Problem {
	if st.files == nil {
		return nil
	}
	var out []Problem
	for _, f := range st.files.Failures() {
		out = append(out, Problem{Side: st.label, Folder: f.Folder, Source: f.Source, Error: f.Error})
	}
	return out
}

// sources groups the source side's folders by name (a Gmail account's
// folder can be read from several mailboxes), selected by Include and
// Exclude (an account's source did that already, as export does), then
// Only.
func (st *store) sources(o Options) []*source {
	selected := func(string) bool { return true }
	if st.acct == nil {
		// the same selection as export's, on the local folders
		var fake []*account.Folder
		for _, f := range st.folders {
			fake = append(fake, &account.Folder{Name: f.Name, Segments: strings.Split(f.Name, "/"), Delim: '/'})
		}
		keep := map[string]bool{}
		for _, p := range export.PlanFolders(fake, false, export.LabelsAsMetadata, o.Include, o.Exclude) {
			keep[p.Name] = true
		}
		selected = func(name string) bool { return keep[name] }
	}
	byName := map[string]*source{}
	var out []*source
	for _, f := range st.folders {
		if !selected(f.Name) || o.Only != nil && !slices.Contains(o.Only, f.Name) {
			continue
		}
		s := byName[f.Name]
		if s == nil {
			s = &source{name: f.Name}
			byName[f.Name] = s
			out = append(out, s)
		}
		if f.Role != "" {
			s.role = f.Role
		}
		s.allMail = s.allMail || f.AllMail
		s.folders = append(s.folders, f)
	}
	if st.gmail {
		sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	}
	return out
}

// otherFolders lists the folders of the side that no source maps to.
func (st *store) otherFolders(mapped map[string][]*source) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, f := range st.folders {
		if mapped[f.Name] == nil && !seen[f.Name] {
			seen[f.Name] = true
			out = append(out, f.Name)
		}
	}
	sort.Strings(out)
	return out
}

// read reads one folder through the engine's reader: the metadata of
// every message (Meta; a mailmove archive's index, Indexer), then with
// needHash the bytes of those that need their SHA-256 (Fetch, streamed into
// the hash).
func (st *store) read(ctx context.Context, f *engine.Folder, name string, needHash func(*entry) bool) (out []*entry, probs []Problem, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	r, err := st.src.Open(ctx, f)
	if err != nil {
		if engine.IsFolderError(err) {
			return nil, []Problem{{Side: st.label, Folder: name, Error: err.Error()}}, nil
		}
		return nil, nil, fmt.Errorf("opening %q on %s: %w", name, st.side, err)
	}
	var rerr error
	defer func() { r.Close(rerr) }()
	fail := func(what string, e error) error {
		rerr = e
		return fmt.Errorf("%s %q on %s: %w", what, name, st.side, e)
	}
	uids, err := r.UIDs(ctx, engine.Select{})
	if err != nil {
		return nil, nil, fail("listing the messages of", err)
	}
	metas := map[uint32]*engine.Message{}
	if ix, ok := r.(engine.Indexer); ok && st.archive {
		maps.Copy(metas, ix.Indexed(uids))
	}
	var rest []uint32
	for _, u := range uids {
		if metas[u] == nil {
			rest = append(rest, u)
		}
	}
	if len(rest) > 0 {
		got, err := r.Meta(ctx, rest)
		var ue *engine.UndeliveredError
		if errors.As(err, &ue) {
			for _, u := range ue.UIDs {
				probs = append(probs, Problem{Side: st.label, Folder: name, UID: u, Error: "the server would not describe the message: " + ue.Err.Error()})
			}
			err = nil
		}
		if err != nil {
			return nil, nil, fail("reading", err)
		}
		maps.Copy(metas, got)
	}
	byUID := map[uint32]*entry{}
	var want []uint32
	for _, u := range uids {
		m := metas[u]
		if m == nil {
			continue // expunged meanwhile, or (files) not readable: a Failure
		}
		e := &entry{Entry: Entry{Folder: name, MessageID: m.MessageID, Size: m.Size, Date: m.InternalDate, Flags: cleanFlags(m.Flags), at: &ref{f, u}}}
		if st.acct != nil {
			e.UID = u
		}
		if st.keywords != "" {
			if ls := st.src.Labels(engine.LabelKey(m.PMID, m.GmailID)); len(ls) > 0 {
				e.Flags = cleanFlags(engine.CopyFlags(e.Flags, ls, st.keywords))
			}
		}
		if st.labels {
			ls := m.Labels
			if ls == nil {
				ls = st.src.Labels(engine.LabelKey(m.PMID, m.GmailID))
			}
			if len(ls) > 0 {
				e.Labels = slices.Sorted(slices.Values(ls))
			}
		}
		out = append(out, e)
		byUID[u] = e
		if needHash(e) {
			want = append(want, u)
		}
	}
	if len(want) == 0 {
		return out, probs, nil
	}
	done, err := r.Fetch(ctx, want, func(uid uint32, body io.Reader, size int64) error {
		sum, _, err := hashMessage(io.NopCloser(body))
		var ie *imports.InputError
		if err != nil && st.files != nil && errors.As(err, &ie) {
			// a local message that is not what its index says: named,
			// left out of the comparison of contents; the others go on
			if e := byUID[uid]; e != nil {
				e.bad = true
			}
			probs = append(probs, Problem{Side: st.label, Folder: name, Source: ie.File, Error: ie.Msg})
			return nil
		}
		if err != nil {
			return err
		}
		if e := byUID[uid]; e != nil {
			e.SHA256 = sum
		}
		return nil
	})
	var ue *engine.UndeliveredError
	refusal := "the server did not send the message"
	if errors.As(err, &ue) {
		refusal, err = "the server would not send the message: "+ue.Err.Error(), nil
	}
	if err != nil {
		return nil, nil, fail("reading the messages of", err)
	}
	for _, u := range want {
		if done[u] {
			continue
		}
		byUID[u].bad = true
		if st.files == nil {
			// (a local side's failure is one of its Failures)
			probs = append(probs, Problem{Side: st.label, Folder: name, UID: u, Error: refusal})
		}
	}
	return out, probs, nil
}

// describe fills in the subject, Date header and (local side) place of
// reported entries, which the comparison did not need: through the
// engine's reader (Describer), a few header fields per message.
func (st *store) describe(ctx context.Context, es []*Entry) error {
	byFolder := map[*engine.Folder][]*Entry{}
	var order []*engine.Folder
	for _, e := range es {
		if e.at == nil {
			continue
		}
		if byFolder[e.at.f] == nil {
			order = append(order, e.at.f)
		}
		byFolder[e.at.f] = append(byFolder[e.at.f], e)
	}
	for _, f := range order {
		r, err := st.src.Open(ctx, f)
		if err != nil {
			if engine.IsFolderError(err) {
				continue
			}
			return fmt.Errorf("opening %q on %s: %w", f.Name, st.side, err)
		}
		d, ok := r.(engine.Describer)
		if !ok {
			r.Close(nil)
			continue
		}
		var uids []uint32
		for _, e := range byFolder[f] {
			uids = append(uids, e.at.uid)
		}
		got, err := d.Describe(ctx, uids)
		r.Close(err)
		if err != nil {
			return fmt.Errorf("reading the subjects of messages in %q on %s: %w", f.Name, st.side, err)
		}
		for _, e := range byFolder[f] {
			x := got[e.at.uid]
			e.Subject, e.Source = x.Subject, x.Where
			if !x.Date.IsZero() {
				e.Date = x.Date
			}
		}
	}
	return nil
}

// cleanFlags drops \Recent and sorts.
func cleanFlags(in []string) []string {
	out := []string{}
	for _, f := range in {
		if !strings.EqualFold(f, `\Recent`) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// hashMessage returns the SHA-256 that Deep compares (CRLF line endings as
// import sends them, IgnoredFields left out of the header) and the size
// with CRLF line endings (every field counted). It streams.
func hashMessage(r io.ReadCloser) (string, int64, error) {
	n := imports.Normalize(r)
	defer n.Close()
	cr := &countingReader{r: n}
	h := sha256.New()
	if _, err := io.Copy(h, newFieldFilter(cr, IgnoredFields)); err != nil {
		return "", cr.n, err
	}
	return hex.EncodeToString(h.Sum(nil)), cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fieldFilter leaves out of a message's header the fields whose names
// start with one of its prefixes, with their continuation lines; the body
// passes untouched.
type fieldFilter struct {
	br       *bufio.Reader
	prefixes []string // lower case
	inHeader bool
	dropping bool
	mid      bool // in the middle of a long line
	pending  []byte
	err      error
}

func newFieldFilter(r io.Reader, prefixes []string) *fieldFilter {
	f := &fieldFilter{br: bufio.NewReaderSize(r, 64<<10), inHeader: true}
	for _, p := range prefixes {
		f.prefixes = append(f.prefixes, strings.ToLower(p))
	}
	return f
}

func (f *fieldFilter) Read(p []byte) (int, error) {
	for len(f.pending) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if !f.inHeader {
			return f.br.Read(p)
		}
		line, err := f.br.ReadSlice('\n')
		if len(line) > 0 {
			if !f.mid {
				switch {
				case len(bytes.TrimRight(line, "\r\n")) == 0:
					f.inHeader, f.dropping = false, false
				case line[0] == ' ' || line[0] == '\t':
					// a continuation line: kept or dropped with its field
				default:
					name, _, _ := bytes.Cut(line, []byte(":"))
					lname := strings.ToLower(string(bytes.TrimSpace(name)))
					f.dropping = false
					for _, pre := range f.prefixes {
						if strings.HasPrefix(lname, pre) {
							f.dropping = true
						}
					}
				}
			}
			f.mid = err == bufio.ErrBufferFull
			if !f.dropping {
				f.pending = line
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			f.err = err
		}
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}
