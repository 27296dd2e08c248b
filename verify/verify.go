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
	"filippo.io/age"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
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
	// Conn, if set, is a connection to Account already logged in (migrate's
	// own, at the end of its run): Compare uses it, alone, and leaves it
	// open; without it Compare dials, and logs out at the end.
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
	bad  bool                          // could not be read: left out
	open func() (io.ReadCloser, error) // local side
}

// source is a folder of the source side, as an export names it.
type source struct {
	name    string
	role    string
	folder  *account.Folder // account side
	allMail bool            // Bridge: only the messages in no folder
	// gmail: on a Gmail account exported the Gmail way, the messages whose
	// folder this is, by the mailbox they are read from (All Mail, Spam,
	// Trash) and their UIDs there
	gmail  map[*account.Folder][]uint32
	target string
	items  []*imports.Item // local side
}

// store is one side, opened.
type store struct {
	side    Side
	label   string // "from" or "to"
	conn    *account.Conn
	ownConn bool // dialed by Compare: logged out at the end
	folders []*account.Folder
	bridge  bool
	gmail   bool // a Gmail account (X-GM-EXT-1): export's Gmail plan, each message once
	// labels by X-Pm-Internal-Id (Bridge, with Options.Flags)
	labels map[string][]string
	// local side
	items   map[string][]*imports.Item
	roles   map[string]string
	archive bool // a mailmove archive: sizes from the index
	bad     []error
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
	sa, err := openStore(ctx, a, "from")
	if err != nil {
		return r, err
	}
	defer sa.close()
	sb, err := openStore(ctx, b, "to")
	if err != nil {
		return r, err
	}
	defer sb.close()
	// Ctrl-C: the connections Compare dialed are closed under it, so that
	// it returns at once whatever it waits for
	for _, st := range []*store{sa, sb} {
		if st.conn != nil && st.ownConn {
			c := st.conn
			defer context.AfterFunc(ctx, func() { c.Close() })()
		}
	}
	for _, e := range sa.bad {
		r.Problems = append(r.Problems, inputProblem("from", e))
	}
	for _, e := range sb.bad {
		r.Problems = append(r.Problems, inputProblem("to", e))
	}
	sources, err := sa.sources(ctx, o)
	if err != nil {
		return r, err
	}
	// Proton labels are compared with the flags where both sides know
	// them: a Bridge account, a mailmove archive.
	compareLabels := o.Flags && sa.knowsLabels() && sb.knowsLabels()
	if compareLabels {
		for _, st := range []*store{sa, sb} {
			if st.conn != nil {
				if st.labels, err = export.LabelsByID(ctx, st.conn, st.folders); err != nil {
					return r, fmt.Errorf("reading the Proton labels of %s: %w", st.side, err)
				}
			}
		}
	}
	// Proton Mail Bridge rebuilds the messages it imports: on a Bridge
	// target only Message-ID is compared, as import does.
	idOnly := sb.conn != nil && sb.bridge
	if idOnly {
		r.Notes = append(r.Notes, "the target is Proton Mail Bridge, which rebuilds the messages it imports: messages are matched by Message-ID alone, sizes and contents are not compared, nor keywords")
	}
	// the target folder of every source folder
	byTarget := map[string][]*source{}
	var targets []string
	// an account's folder names come from the engine's sink, as migrate
	// and import place messages
	var sink engine.Sink
	if sb.conn != nil {
		sink = imports.MappingSink(sb.folders, sb.bridge, sb.gmail, o.Map, o.Prefix)
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
				es, probs, err := sa.readSource(ctx, s, needHash)
				if err != nil {
					errA = err
					return
				}
				fromEntries[t] = append(fromEntries[t], es...)
				fromProblems = append(fromProblems, probs...)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for _, t := range targets {
			o.Log("reading %s %s", b, t)
			es, ok, probs, err := sb.readTarget(ctx, t, needHash)
			if err != nil {
				errB = err
				return
			}
			toEntries[t], exists[t] = es, ok
			toProblems = append(toProblems, probs...)
		}
	}()
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if err := errors.Join(errA, errB); err != nil {
		return r, err
	}
	r.Problems = append(append(r.Problems, fromProblems...), toProblems...)
	for _, t := range targets {
		fr := FolderReport{Folder: t, Exists: exists[t], Missing: []Entry{}, Extra: []Entry{}, Different: []Difference{}}
		for _, s := range byTarget[t] {
			fr.From = append(fr.From, s.name)
		}
		compareFolder(&fr, fromEntries[t], toEntries[t], o, idOnly, compareLabels)
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
	// what a human needs to find the messages reported on a local side
	bySource := func(es []*entry) map[string]*entry {
		m := map[string]*entry{}
		for _, e := range es {
			if e.Source != "" {
				m[e.Source] = e
			}
		}
		return m
	}
	for i := range r.Folders {
		fr := &r.Folders[i]
		if len(fr.Missing)+len(fr.Extra)+len(fr.Different) == 0 {
			continue
		}
		fa, fb := bySource(fromEntries[fr.Folder]), bySource(toEntries[fr.Folder])
		for j := range fr.Missing {
			describe(&fr.Missing[j], fa)
		}
		for j := range fr.Extra {
			describe(&fr.Extra[j], fb)
		}
		for j := range fr.Different {
			describe(&fr.Different[j].From, fa)
			describe(&fr.Different[j].To, fb)
		}
	}
	r.Elapsed = time.Since(start)
	return r, nil
}

func inputProblem(side string, e error) Problem {
	var ie *imports.InputError
	if errors.As(e, &ie) {
		src := ie.File
		if ie.Line > 0 {
			src = fmt.Sprintf("%s line %d", ie.File, ie.Line)
		}
		return Problem{Side: side, Folder: ie.Folder, Source: src, Error: ie.Msg}
	}
	return Problem{Side: side, Error: e.Error()}
}

// openStore connects to an account (and lists its folders) or scans a
// local path.
func openStore(ctx context.Context, s Side, label string) (*store, error) {
	st := &store{side: s, label: label}
	if s.Account != nil {
		c := s.Conn
		if c == nil {
			var err error
			if c, err = s.Account.Dial(ctx); err != nil {
				return nil, err
			}
			st.ownConn = true
		}
		st.conn = c
		st.bridge = s.Account.URL.Bridge || c.IsBridge()
		st.gmail = !st.bridge && c.IsGmail()
		var err error
		if st.folders, err = c.ListFolders(); err != nil {
			st.close()
			return nil, fmt.Errorf("listing the folders of %s: %w", s, err)
		}
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
	st.items, st.roles = map[string][]*imports.Item{}, map[string]string{}
	err := imports.ScanWith(s.Path, s.Format, false, s.Identities, func(it *imports.Item) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		f := it.Meta.Folder
		st.items[f] = append(st.items[f], it)
		if it.Role != "" {
			st.roles[f] = it.Role
		}
		return nil
	}, func(e error) { st.bad = append(st.bad, e) })
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", s.Path, err)
	}
	return st, nil
}

// knowsLabels reports whether the side records Proton labels.
func (st *store) knowsLabels() bool { return st.conn != nil && st.bridge || st.archive }

func (st *store) close() {
	if st.conn != nil && st.ownConn {
		st.conn.Logout().Wait()
		st.conn.Close()
	}
}

// sources lists the source folders as an export names them: on an account,
// export's plan (Bridge: Folders/ taken off, Labels/... and Starred not
// folders, All Mail for the messages in no folder only); locally, the
// folders of the input; both selected by Include and Exclude.
func (st *store) sources(ctx context.Context, o Options) ([]*source, error) {
	out, err := st.selectSources(ctx, o)
	if err != nil || o.Only == nil {
		return out, err
	}
	kept := out[:0]
	for _, s := range out {
		if slices.Contains(o.Only, s.name) {
			kept = append(kept, s)
		}
	}
	return kept, nil
}

func (st *store) selectSources(ctx context.Context, o Options) ([]*source, error) {
	var out []*source
	if st.conn != nil && st.gmail {
		// as export stores a Gmail account: each message once, in the
		// folder export's rule chooses (a source compared as a target is
		// read folder by folder, label folders included)
		msgs, err := export.ScanGmail(ctx, st.side.Account, st.folders, o.Log)
		if err != nil {
			return nil, err
		}
		byName := map[string]*source{}
		for _, m := range msgs {
			name := m.Folder.Path()
			if !export.Selected(name, o.Include, o.Exclude) {
				continue
			}
			src := byName[name]
			if src == nil {
				attrs := make([]string, len(m.Folder.Attrs))
				for i, a := range m.Folder.Attrs {
					attrs[i] = string(a)
				}
				src = &source{name: name, role: imports.FolderRole(attrs), folder: m.Folder, gmail: map[*account.Folder][]uint32{}}
				byName[name] = src
				out = append(out, src)
			}
			src.gmail[m.Source] = append(src.gmail[m.Source], m.UID)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
		return out, nil
	}
	if st.conn != nil {
		for _, p := range export.PlanFolders(st.folders, st.bridge, export.LabelsAsMetadata, o.Include, o.Exclude) {
			attrs := make([]string, len(p.Folder.Attrs))
			for i, a := range p.Folder.Attrs {
				attrs[i] = string(a)
			}
			out = append(out, &source{name: p.Name, role: imports.FolderRole(attrs), folder: p.Folder, allMail: p.AllMail})
		}
		return out, nil
	}
	// the same selection as export's, on the local folders
	var fake []*account.Folder
	for name := range st.items {
		fake = append(fake, &account.Folder{Name: name, Segments: strings.Split(name, "/"), Delim: '/'})
	}
	for _, p := range export.PlanFolders(fake, false, export.LabelsAsMetadata, o.Include, o.Exclude) {
		out = append(out, &source{name: p.Name, role: st.roles[p.Name], items: st.items[p.Name]})
	}
	return out, nil
}

// otherFolders lists the folders of the side that no source maps to.
func (st *store) otherFolders(mapped map[string][]*source) []string {
	out := []string{}
	if st.conn != nil {
		for _, f := range st.folders {
			if f.Selectable() && mapped[f.Path()] == nil {
				out = append(out, f.Path())
			}
		}
	} else {
		for name := range st.items {
			if mapped[name] == nil {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// readSource reads the messages of a source folder.
func (st *store) readSource(ctx context.Context, s *source, needHash func(*entry) bool) ([]*entry, []Problem, error) {
	if st.conn == nil {
		es, probs := st.readLocal(ctx, s.name, s.items, needHash)
		return es, probs, ctx.Err()
	}
	if s.gmail != nil {
		var all []*entry
		var probs []Problem
		for f, uids := range s.gmail {
			es, p, err := st.readAccount(ctx, f, s.name, uids, needHash)
			all, probs = append(all, es...), append(probs, p...)
			if err != nil {
				return all, probs, err
			}
		}
		return all, probs, nil
	}
	var uids []uint32
	if s.allMail {
		u, _, err := export.AllMailOnlyUIDs(ctx, st.conn, st.folders, export.LabelsAsMetadata, nil, nil)
		if err != nil {
			return nil, []Problem{{Side: st.label, Folder: s.folder.Path(), Error: "sorting out All Mail: " + err.Error()}}, ctx.Err()
		}
		if len(u) == 0 {
			return nil, nil, nil
		}
		uids = u
	}
	return st.readAccount(ctx, s.folder, s.name, uids, needHash)
}

// readTarget reads the messages of a target folder; ok is false when the
// side has no such folder.
func (st *store) readTarget(ctx context.Context, name string, needHash func(*entry) bool) (es []*entry, ok bool, probs []Problem, err error) {
	if st.conn == nil {
		items, ok := st.items[name]
		es, probs := st.readLocal(ctx, name, items, needHash)
		return es, ok, probs, ctx.Err()
	}
	for _, f := range st.folders {
		if f.Selectable() && f.Path() == name {
			es, probs, err := st.readAccount(ctx, f, name, nil, needHash)
			return es, true, probs, err
		}
	}
	return nil, false, nil, nil
}

// readLocal reads items of a local side: their index data (a mailmove
// archive), or their bytes (other input: the size with CRLF line endings).
func (st *store) readLocal(ctx context.Context, folder string, items []*imports.Item, needHash func(*entry) bool) ([]*entry, []Problem) {
	var out []*entry
	var probs []Problem
	for _, it := range items {
		if ctx.Err() != nil {
			return out, probs
		}
		it := it
		e := &entry{Entry: Entry{Folder: folder, Source: it.Source, MessageID: it.Meta.MessageID, Size: it.Meta.Size,
			Date: it.Meta.InternalDate, Flags: cleanFlags(it.Meta.Flags)}, open: it.Open}
		if st.archive && len(it.Meta.Labels) > 0 {
			e.Labels = slices.Sorted(slices.Values(it.Meta.Labels))
		}
		if !st.archive || needHash(e) {
			r, err := it.Open()
			if err == nil {
				var n int64
				e.SHA256, n, err = hashMessage(r)
				if !st.archive {
					e.Size = n
				}
			}
			if err != nil {
				e.bad = true
				probs = append(probs, Problem{Side: st.label, Folder: folder, Source: it.Source, Error: err.Error()})
			}
		}
		out = append(out, e)
	}
	return out, probs
}

// headerFields are the fields fetched with every message's metadata.
var headerFields = []string{"Message-Id", "Subject", "Date"}

// readAccount reads one folder of an account (EXAMINE, FETCH of metadata and
// a few header fields, BODY.PEEK[] for the hashes): the messages uids, or
// all when uids is nil.
func (st *store) readAccount(ctx context.Context, f *account.Folder, name string, uids []uint32, needHash func(*entry) bool) ([]*entry, []Problem, error) {
	c := st.conn
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	sel, err := c.Examine(f.Name)
	if err != nil {
		if isConnErr(c) {
			return nil, nil, fmt.Errorf("EXAMINE %q on %s: %w", f.Name, st.side, err)
		}
		return nil, []Problem{{Side: st.label, Folder: name, Error: "the server refused to open the folder: " + err.Error()}}, nil
	}
	if sel.NumMessages == 0 {
		return nil, nil, nil
	}
	var set imap.UIDSet
	if uids == nil {
		set.AddRange(1, 0)
	} else {
		for _, u := range uids {
			set.AddNum(imap.UID(u))
		}
	}
	fields := headerFields
	if st.labels != nil {
		fields = append(slices.Clip(fields), "X-Pm-Internal-Id")
	}
	sec := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: fields}
	fc := c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{sec}})
	var out []*entry
	byUID := map[uint32]*entry{}
	for m := fc.Next(); m != nil; m = fc.Next() {
		buf, err := m.Collect()
		if err != nil {
			fc.Close()
			return nil, nil, fmt.Errorf("reading %q on %s: %w", f.Name, st.side, err)
		}
		if buf.UID == 0 {
			continue
		}
		var hdr []byte
		for _, bs := range buf.BodySection {
			hdr = bs.Bytes
		}
		e := &entry{Entry: Entry{Folder: name, UID: uint32(buf.UID), MessageID: imports.MessageID(hdr), Size: buf.RFC822Size, Date: buf.InternalDate}}
		for _, fl := range buf.Flags {
			e.Flags = append(e.Flags, string(fl))
		}
		e.Flags = cleanFlags(e.Flags)
		subject, date, pmid := subjectDate(hdr)
		e.Subject = subject
		if pmid != "" {
			e.Labels = st.labels[pmid]
		}
		if !date.IsZero() {
			e.Date = date
		}
		out = append(out, e)
		byUID[e.UID] = e
	}
	if err := fc.Close(); err != nil {
		return nil, nil, fmt.Errorf("UID FETCH in %q on %s: %w", f.Name, st.side, err)
	}
	var want []uint32
	for _, e := range out {
		if needHash(e) {
			want = append(want, e.UID)
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	var probs []Problem
	if len(want) > 0 {
		done, err := c.FetchBodies(want, func(uid uint32, r io.Reader, size int64) error {
			sum, _, err := hashMessage(io.NopCloser(r))
			if err != nil {
				return &account.ReadError{Err: err}
			}
			if e := byUID[uid]; e != nil {
				e.SHA256 = sum
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("reading the messages of %q on %s: %w", f.Name, st.side, err)
		}
		for _, u := range want {
			if !done[u] {
				e := byUID[u]
				e.bad = true
				probs = append(probs, Problem{Side: st.label, Folder: name, UID: u, Error: "the server did not send the message"})
			}
		}
	}
	return out, probs, nil
}

// isConnErr reports whether the connection is gone.
func isConnErr(c *account.Conn) bool {
	select {
	case <-c.Closed():
		return true
	default:
		return false
	}
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

// subjectDate reads the Subject (RFC 2047 decoded), Date and
// X-Pm-Internal-Id of a header.
func subjectDate(hdr []byte) (string, time.Time, string) {
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte(nil), hdr...), '\r', '\n', '\r', '\n')))
	if err != nil {
		return "", time.Time{}, ""
	}
	subject := m.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = d
	}
	date, _ := m.Header.Date()
	return subject, date, strings.TrimSpace(m.Header.Get("X-Pm-Internal-Id"))
}

// describe fills in the subject and Date header of a message reported from
// a local side, which its index does not hold.
func describe(e *Entry, bySource map[string]*entry) {
	if e.Subject != "" || e.UID != 0 {
		return
	}
	if x := bySource[e.Source]; x != nil && x.open != nil {
		r, err := x.open()
		if err != nil {
			return
		}
		defer r.Close()
		br := bufio.NewReaderSize(r, 64<<10)
		var hdr bytes.Buffer
		for hdr.Len() < 256<<10 {
			line, err := br.ReadSlice('\n')
			hdr.Write(line)
			if err == bufio.ErrBufferFull {
				continue
			}
			if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
		subject, date, _ := subjectDate(hdr.Bytes())
		e.Subject = subject
		if !date.IsZero() {
			e.Date = date
		}
		return
	}
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
