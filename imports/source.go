package imports

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	stdhash "hash"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"filippo.io/age"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/message"
)

// FilesSource is the engine's Source over local input: what Scan reads (a
// mailmove archive, encrypted ones with Identities; an mbox file or tree; a
// folder of .eml files; Maildir and Maildir++ trees; a Gmail Takeout mbox;
// or "-", an mbox on standard input, kept in a temporary file for the run).
//
// Files have no UIDs: a folder's messages are numbered 1, 2, ... in the
// order of the scan, for one run only, and each has an ID (engine.IDReader)
// that the engine's journal records: the file (and byte offset in an mbox,
// the unique part of a Maildir file name, which stays when its flags
// change) and the Message-ID read there, so that another message at the
// same place (an mbox rewritten by its mail program) is not taken for the
// one copied. Each message's bytes are streamed from its file, line endings
// made CRLF as IMAP needs them; its size on the wire is measured first
// (Meta), as an import always did.
//
// Gmail labels (Takeout's X-Gmail-Labels, a Gmail archive's labels) and
// Proton labels (an archive of Bridge, Proton's export) are the messages'
// engine.Message.Labels; the scan already turned them into keywords (or,
// with LabelsAsFolders, copies into one folder per label).
type FilesSource struct {
	// Path is the input: a file, a folder, or "-" for standard input.
	Path string
	// Format forces the input format; empty means detect it.
	Format Format
	// Identities decrypt an encrypted mailmove archive.
	Identities []age.Identity
	// LabelsAsFolders: Gmail labels beyond the message's folder become
	// folders (one copy each) instead of keywords.
	LabelsAsFolders bool
	// NoLabelKeywords leaves out of the flags the keywords that labels
	// became (--labels skip).
	NoLabelKeywords bool
	// GmailTarget: the target is Gmail, which is given the labels
	// themselves (a Gmail archive's, Proton's): Labels are those, and the
	// keywords a Gmail archive's labels became are left out of the flags.
	GmailTarget bool
	// Stdin is read for "-" (os.Stdin when nil).
	Stdin io.Reader
	// Only, if set, selects the source folders to read (migrate's
	// --folder and --exclude); the others are left out, as if not there.
	Only func(folder string) bool

	scanned   bool
	canonical string
	ident     string
	tmp       string
	items     int
	folders   []*engine.Folder
	byName    map[string]*filesFolder
	labels    map[string][]string
	gmLabels  map[string][]string // the labels for a Gmail target
	bad       []Failure

	mu     sync.Mutex
	failed map[string]map[uint32]Failure // message failures by folder and UID
}

var _ engine.Source = (*FilesSource)(nil)

// filesFolder is one source folder: its messages, UID i+1 for items[i].
type filesFolder struct {
	name  string
	items []*Item
	ids   []string
}

// Scan reads the input (once; Folders calls it when it was not called).
// Input that is not mail is reported in Failures, not an error.
func (s *FilesSource) Scan(ctx context.Context) error {
	if s.scanned {
		return nil
	}
	src := s.Path
	if src == "-" {
		// An mbox on standard input is read twice (size, then the copy):
		// keep a copy for the length of the run.
		in := s.Stdin
		if in == nil {
			in = os.Stdin
		}
		f, err := os.CreateTemp("", "mailmove-stdin-*.mbox")
		if err != nil {
			return err
		}
		s.tmp = f.Name()
		err = copyCtx(ctx, f, in)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
		src = s.tmp
		s.canonical = "-"
	} else {
		var err error
		if src, s.ident, err = sourceIdentity(src); err != nil {
			return err
		}
		s.canonical = src
	}
	items, bads, err := scanCtx(ctx, src, s.Format, s.LabelsAsFolders, s.Identities)
	for _, e := range bads {
		s.bad = append(s.bad, inputFailure(e))
	}
	if err != nil {
		return err
	}
	s.scanned = true
	s.byName = map[string]*filesFolder{}
	s.labels = map[string][]string{}
	s.gmLabels = map[string][]string{}
	s.failed = map[string]map[uint32]Failure{}
	n := 0
	for _, it := range items {
		name := it.Meta.Folder
		if s.Only != nil && !s.Only(name) {
			continue
		}
		n++
		ff := s.byName[name]
		if ff == nil {
			ff = &filesFolder{name: name}
			s.byName[name] = ff
			f := &engine.Folder{Name: name, UIDValidity: 1, Handle: ff}
			s.folders = append(s.folders, f)
		}
		id := it.ID + "|" + it.Meta.MessageID
		ff.items = append(ff.items, it)
		ff.ids = append(ff.ids, id)
		if ls := fileLabels(it); len(ls) > 0 {
			s.labels[engine.LabelKeyOf("", "", id)] = ls
		}
		if ls := gmailTargetLabelsOf(it); len(ls) > 0 {
			s.gmLabels[engine.LabelKeyOf("", "", id)] = ls
		}
	}
	s.items = n
	for _, f := range s.folders {
		ff := f.Handle.(*filesFolder)
		f.Messages = uint32(len(ff.items))
		f.UIDNext = f.Messages + 1
		for _, it := range ff.items {
			f.Bytes += it.Meta.Size
			if f.Role == "" {
				f.Role = it.Role
			}
		}
	}
	return nil
}

// inputFailure turns a scan's report of bad input into a Failure.
func inputFailure(e error) Failure {
	var ie *InputError
	f := Failure{Kind: KindInput, Error: e.Error()}
	if errors.As(e, &ie) {
		f.Source, f.Error = ie.File, ie.Msg
		if ie.Line > 0 {
			f.Source = fmt.Sprintf("%s line %d", ie.File, ie.Line)
		}
	}
	return f
}

// fileLabels are the labels of a message read from files, as the engine
// takes them: Proton labels as they are ("Starred" among them); Gmail's
// user labels other than the message's own folder, with "Starred" and
// "$Important" for Gmail's starred and important (Gmail's other system
// labels are folders or flags already).
func fileLabels(it *Item) []string {
	var out []string
	add := func(l string) {
		for _, o := range out {
			if strings.EqualFold(o, l) {
				return
			}
		}
		out = append(out, l)
	}
	for _, l := range it.Meta.GmailLabels {
		switch {
		case strings.EqualFold(l, `\Important`):
			add("$Important")
		case strings.EqualFold(l, `\Starred`):
			add("Starred")
		case strings.HasPrefix(l, `\`), l == it.Meta.Folder:
		default:
			add(l)
		}
	}
	// Takeout's labels are X-Gmail-Labels as they are; Proton's come with
	// its internal ID
	takeout := len(it.Meta.GmailLabels) == 0 && it.Meta.PMInternalID == ""
	for _, l := range it.Meta.Labels {
		if !takeout {
			add(l)
			continue
		}
		switch ll := strings.ToLower(l); {
		case ll == "starred":
			add("Starred")
		case ll == "important":
			add("$Important")
		case ll == "inbox", ll == "sent", ll == "draft", ll == "drafts", ll == "spam", ll == "trash", ll == "unread",
			ll == "opened", ll == "archived", ll == "chat", strings.HasPrefix(ll, "category "), strings.HasPrefix(l, "IMAP_"),
			l == it.Meta.Folder:
		default:
			add(l)
		}
	}
	return out
}

// gmailTargetLabelsOf are the labels of a message for a Gmail target: a
// Gmail archive's (less \Spam and \Trash, mailboxes there, and \Starred
// when the message is \Flagged, which gives it), or the Proton labels of
// a Proton message (less Starred, its \Flagged).
func gmailTargetLabelsOf(it *Item) []string {
	flagged := false
	for _, f := range it.Meta.Flags {
		flagged = flagged || strings.EqualFold(f, `\Flagged`)
	}
	var out []string
	switch {
	case len(it.Meta.GmailLabels) > 0:
		for _, l := range it.Meta.GmailLabels {
			if strings.EqualFold(l, `\Spam`) || strings.EqualFold(l, `\Trash`) || flagged && strings.EqualFold(l, `\Starred`) {
				continue
			}
			out = append(out, l)
		}
	case it.Meta.PMInternalID != "":
		for _, l := range it.Meta.Labels {
			if l != "Starred" {
				out = append(out, l)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Identity names the input for a journal: its resolved path and what it
// is (device and inode), or "-" for standard input. Valid after Scan.
func (s *FilesSource) Identity() string {
	if s.canonical == "-" {
		return "-"
	}
	return s.canonical + "\x00" + s.ident
}

// Canonical is the input's absolute path with symlinks evaluated ("-" for
// standard input). Valid after Scan.
func (s *FilesSource) Canonical() string { return s.canonical }

// Seen is how many messages the scan found (a Takeout message with
// LabelsAsFolders once per folder).
func (s *FilesSource) Seen() int { return s.items }

// Failures returns what could not be read: input that is not mail
// (KindInput) and messages that could not be sent as they are
// (KindMessage: unreadable, NUL bytes, a zip archive, not matching their
// archive index).
func (s *FilesSource) Failures() []Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]Failure{}, s.bad...)
	var names []string
	for n := range s.failed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var uids []uint32
		for u := range s.failed[n] {
			uids = append(uids, u)
		}
		sort.Slice(uids, func(a, b int) bool { return uids[a] < uids[b] })
		for _, u := range uids {
			out = append(out, s.failed[n][u])
		}
	}
	return out
}

// EngineFailures returns the messages that could not be read, as the
// engine reports failures (folder and UID of this run).
func (s *FilesSource) EngineFailures() []engine.Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []engine.Failure
	for _, f := range s.bad {
		out = append(out, engine.Failure{Folder: f.Source, Error: f.Error})
	}
	for n, m := range s.failed {
		for u, f := range m {
			out = append(out, engine.Failure{Folder: n, UID: u, Error: f.Source + ": " + f.Error})
		}
	}
	sort.Slice(out, func(i, k int) bool {
		return out[i].Folder < out[k].Folder || (out[i].Folder == out[k].Folder && out[i].UID < out[k].UID)
	})
	return out
}

// failedMap returns a copy of the message failures, by folder and UID.
func (s *FilesSource) failedMap() map[string]map[uint32]Failure {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]map[uint32]Failure{}
	for n, m := range s.failed {
		out[n] = map[uint32]Failure{}
		for u, f := range m {
			out[n][u] = f
		}
	}
	return out
}

// ItemOf returns the scanned item of a message (folder and UID of this
// run), nil when there is none.
func (s *FilesSource) ItemOf(folder string, uid uint32) *Item {
	ff := s.byName[folder]
	if ff == nil || uid == 0 || int(uid) > len(ff.items) {
		return nil
	}
	return ff.items[uid-1]
}

// Folders lists the input's folders, in the order of the scan.
func (s *FilesSource) Folders(ctx context.Context) ([]*engine.Folder, error) {
	if err := s.Scan(ctx); err != nil {
		return nil, err
	}
	return s.folders, nil
}

// Open opens a folder.
func (s *FilesSource) Open(ctx context.Context, f *engine.Folder) (engine.FolderReader, error) {
	ff, ok := f.Handle.(*filesFolder)
	if !ok {
		return nil, fmt.Errorf("folder %s is not of this input", f.Name)
	}
	return &filesReader{s: s, f: ff, sizes: map[uint32]int64{}}, nil
}

// Labels returns the labels of a message by its key (engine.LabelKeyOf).
func (s *FilesSource) Labels(key string) []string {
	if s.GmailTarget {
		return s.gmLabels[key]
	}
	return s.labels[key]
}

// Bridge reports false: files are not Proton Mail Bridge.
func (s *FilesSource) Bridge() bool { return false }

// Close removes the copy of standard input.
func (s *FilesSource) Close() error {
	if s.tmp != "" {
		os.Remove(s.tmp)
		s.tmp = ""
	}
	return nil
}

func (s *FilesSource) fail(folder string, uid uint32, it *Item, err error) {
	msg := err.Error()
	var ie *InputError
	if errors.As(err, &ie) && strings.HasPrefix(it.Source, ie.File) {
		msg = ie.Msg // the source names the file already
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed[folder] == nil {
		s.failed[folder] = map[uint32]Failure{}
	}
	s.failed[folder][uid] = Failure{Source: it.Source, Folder: folder, Kind: KindMessage, Messages: 1, Error: msg}
}

// unfail forgets a failure of a message read well in a later pass.
func (s *FilesSource) unfail(folder string, uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.failed[folder], uid)
}

// filesReader reads one folder of the input.
type filesReader struct {
	s *FilesSource
	f *filesFolder
	// sizes are the sizes on the wire Meta measured
	sizes map[uint32]int64
}

var _ engine.IDReader = (*filesReader)(nil)

func (r *filesReader) State() (uint32, uint64) { return 1, 0 }

func (r *filesReader) item(u uint32) *Item {
	if u == 0 || int(u) > len(r.f.items) {
		return nil
	}
	return r.f.items[u-1]
}

// UIDs numbers the folder's messages (those sel selects by date).
func (r *filesReader) UIDs(ctx context.Context, sel engine.Select) ([]uint32, error) {
	var out []uint32
	for i, it := range r.f.items {
		d := it.Meta.InternalDate
		if !sel.Since.IsZero() && d.Before(sel.Since) || !sel.Before.IsZero() && !d.Before(sel.Before) {
			continue
		}
		out = append(out, uint32(i+1))
	}
	return out, nil
}

// IDs returns the messages' IDs.
func (r *filesReader) IDs(ctx context.Context, uids []uint32) (map[uint32]string, error) {
	out := map[uint32]string{}
	for _, u := range uids {
		if it := r.item(u); it != nil {
			out[u] = r.f.ids[u-1]
		}
	}
	return out, nil
}

// flags are a message's flags as the scan read them, less the keywords its
// labels became when NoLabelKeywords is set.
func (r *filesReader) flags(u uint32) []string {
	it := r.item(u)
	fl := append([]string{}, it.Meta.Flags...)
	drop := map[string]bool{}
	switch {
	case r.s.GmailTarget && len(it.Meta.GmailLabels) > 0:
		drop["$important"] = true
	case r.s.NoLabelKeywords:
		drop["$important"] = true
		for _, l := range r.s.labels[engine.LabelKeyOf("", "", r.f.ids[u-1])] {
			if l != "Starred" {
				drop[strings.ToLower(keyword(l))] = true
			}
		}
	default:
		return fl
	}
	for _, l := range it.Meta.GmailLabels {
		drop[strings.ToLower(keyword(l))] = true
	}
	var out []string
	for _, f := range fl {
		if !drop[strings.ToLower(f)] {
			out = append(out, f)
		}
	}
	return out
}

// Flags returns the flags of every message (files have no MODSEQ).
func (r *filesReader) Flags(ctx context.Context, changedSince uint64) (map[uint32][]string, error) {
	out := map[uint32][]string{}
	for i := range r.f.items {
		out[uint32(i+1)] = r.flags(uint32(i + 1))
	}
	return out, nil
}

// Meta reads each message once to know its size on the wire (CRLF), its
// Message-ID and the SHA-256 of its header. A message that cannot be sent
// (unreadable, NUL bytes, a zip archive, not what its archive index says)
// is reported in Failures and left out, as the engine leaves out a message
// gone from the source.
func (r *filesReader) Meta(ctx context.Context, uids []uint32) (map[uint32]*engine.Message, error) {
	out := map[uint32]*engine.Message{}
	for _, u := range uids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		it := r.item(u)
		if it == nil {
			continue
		}
		size, id, hh, err := measureItem(it)
		if err != nil {
			r.s.fail(r.f.name, u, it, err)
			continue
		}
		r.sizes[u] = size
		r.s.unfail(r.f.name, u)
		m := r.message(u, size, id)
		m.HeaderHash = hh
		out[u] = m
	}
	return out, nil
}

// measureItem reads a message as it goes on the wire: its size, its
// Message-ID (as a target's inventory reads it) and the SHA-256 of its
// header (up to and with the empty line). Foreign input that IMAP cannot
// carry is refused: a zip archive, NUL bytes. Anything else goes to the
// server as it is, with or without a header: mailmove is never stricter
// than the target server, which says no if it minds.
func measureItem(it *Item) (int64, string, string, error) {
	r, err := it.Open()
	if err != nil {
		return 0, "", "", err
	}
	_, archived := r.(*verified)
	p := newPrepared(r, nil)
	defer p.Close()
	nul := &nulFinder{}
	hh := &headerHasher{h: sha256.New()}
	n, err := io.Copy(io.MultiWriter(nul, hh), p)
	if err != nil {
		return 0, "", "", err
	}
	switch {
	case !archived && bytes.HasPrefix(p.head, []byte("PK\x03\x04")):
		return 0, "", "", errors.New("this is a zip archive, not a message: unzip it and import what is inside")
	case nul.found:
		return 0, "", "", errors.New("the message holds NUL bytes, which an IMAP APPEND cannot carry; skipped")
	}
	id, _ := account.HeaderIDs(p.sieve.header())
	return n, id, hex.EncodeToString(hh.h.Sum(nil)), nil
}

// headerHasher hashes what is written up to and with the first empty line
// (CRLF CRLF), as a server serves BODY[HEADER].
type headerHasher struct {
	h    stdhash.Hash
	last [4]byte // the last bytes seen
	seen int
	done bool
}

func (w *headerHasher) Write(p []byte) (int, error) {
	for i, c := range p {
		if w.done {
			return len(p), nil
		}
		w.last = [4]byte{w.last[1], w.last[2], w.last[3], c}
		w.seen++
		if (w.seen == 2 && w.last[2] == '\r' && c == '\n') || (w.seen >= 4 && w.last == [4]byte{'\r', '\n', '\r', '\n'}) {
			w.h.Write(p[:i+1])
			w.done = true
			return len(p), nil
		}
	}
	if !w.done {
		w.h.Write(p)
	}
	return len(p), nil
}

// Fetch streams the messages, line endings made CRLF (the size given is
// the one Meta measured; -1 for a message of a mailmove archive that only
// Indexed described, read once, not measured first). A message whose
// bytes are no longer what Meta measured (the file changed) ends its
// stream with an error before its last byte, so that the target never
// stores it cut or grown: the run goes on with a new pass.
func (r *filesReader) Fetch(ctx context.Context, uids []uint32, fn engine.BodyFunc) (map[uint32]bool, error) {
	done := map[uint32]bool{}
	for _, u := range uids {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		it := r.item(u)
		if it == nil {
			continue
		}
		size, ok := r.sizes[u]
		if !ok && !it.indexed {
			var err error
			if size, _, _, err = measureItem(it); err != nil {
				r.s.fail(r.f.name, u, it, err)
				continue
			}
			r.sizes[u] = size
		}
		rc, err := it.Open()
		if err != nil {
			r.s.fail(r.f.name, u, it, err)
			continue
		}
		p := newPrepared(rc, nil)
		p.keepHdr = false
		var body io.Reader
		if ok || !it.indexed {
			body = &exactReader{br: bufio.NewReaderSize(p, 64<<10), left: size, name: it.Source}
		} else {
			// described by its index alone (Indexed, no Meta): streamed
			// as it is, its size on the wire unknown (-1), an error at
			// its end if it is not what the index says
			body, size = p, -1
		}
		err = fn(u, body, size)
		p.Close()
		if err != nil {
			return done, err
		}
		done[u] = true
	}
	return done, nil
}

// exactReader gives exactly left bytes, or an error before the last one
// when its source has more or fewer.
type exactReader struct {
	br   *bufio.Reader
	left int64
	name string
}

func (e *exactReader) Read(b []byte) (int, error) {
	if e.left == 0 {
		if _, err := e.br.ReadByte(); err == nil {
			return 0, e.changed()
		}
		return 0, io.EOF
	}
	if int64(len(b)) > e.left {
		b = b[:e.left]
	}
	n, err := e.br.Read(b)
	e.left -= int64(n)
	if e.left == 0 {
		if _, perr := e.br.Peek(1); perr == nil {
			return 0, e.changed()
		}
		return n, nil
	}
	if err == io.EOF {
		return n, e.changed()
	}
	return n, err
}

func (e *exactReader) changed() error {
	return &InputError{File: e.name, Msg: "changed while it was copied; it is copied again in the next pass"}
}

// Close removes nothing (the input is never changed).
func (r *filesReader) Close(err error) {}

var (
	_ engine.Indexer   = (*filesReader)(nil)
	_ engine.Describer = (*filesReader)(nil)
)

// Indexed returns what a mailmove archive's index records of uids (the
// size stored, Message-ID, flags, date, labels) without reading them; nil
// for other input, whose metadata Meta reads from the bytes.
func (r *filesReader) Indexed(uids []uint32) map[uint32]*engine.Message {
	var out map[uint32]*engine.Message
	for _, u := range uids {
		it := r.item(u)
		if it == nil || !it.indexed {
			continue
		}
		if out == nil {
			out = map[uint32]*engine.Message{}
		}
		m := r.message(u, it.Meta.Size, it.Meta.MessageID)
		m.PMID, m.Labels = it.Meta.PMInternalID, append([]string(nil), it.Meta.Labels...)
		out[u] = m
	}
	return out
}

// message is the engine's message for UID u of the folder, of size bytes.
func (r *filesReader) message(u uint32, size int64, messageID string) *engine.Message {
	it := r.item(u)
	return &engine.Message{Folder: r.f.name, UIDValidity: 1, UID: u, Size: size, Flags: r.flags(u),
		InternalDate: it.Meta.InternalDate, MessageID: messageID, ID: r.f.ids[u-1]}
}

// Describe reads the Subject and Date of uids from their headers, and
// says where each is (file, and line or byte).
func (r *filesReader) Describe(ctx context.Context, uids []uint32) (map[uint32]engine.Description, error) {
	out := map[uint32]engine.Description{}
	for _, u := range uids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		it := r.item(u)
		if it == nil {
			continue
		}
		d := engine.Description{Where: it.Source}
		if rc, err := it.Open(); err == nil {
			if hdr, err := readHeader(rc); err == nil {
				d.Subject, d.Date = message.SubjectDate(hdr)
			}
			rc.Close()
		}
		out[u] = d
	}
	return out, nil
}
