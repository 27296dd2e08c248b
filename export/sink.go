package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/message"
)

// ArchiveSink is a mailmove archive (formats/archive: mbox or .eml files,
// encrypted and compressed or not) as an engine Sink: each source folder
// goes to the archive folder export names it (its Name: the server's
// segments, Proton's Folders/ left out), each message is streamed into it
// and answered only once its bytes and its index line are durable (the
// archive's crash-safety rule), flag changes are flags_update lines, and
// deleted messages go to the archive's deleted area (as export --mirror).
//
// The archive is its own record (engine.Recorder): its index says, for every
// message, the source folder's UIDVALIDITY and the message's UID, flags and
// labels, so the engine keeps no journal file beside it (which, for an
// encrypted archive, would show folder names and Message-IDs in clear).
// The sink's content key is the source message's UIDVALIDITY and UID; a
// message the source renumbered (UIDVALIDITY changed) is fetched again and
// recognised by its content once hashed: only an alias line is written.
type ArchiveSink struct {
	// Archive is the archive, opened for writing; the caller closes it
	// after Close.
	Archive *archive.Archive
	// Source, if set, is the source: on Proton Mail Bridge, Labels/...
	// folders copied as folders are marked label copies in the index.
	Source engine.Source
	// Now gives the time messages found deleted are recorded at (default
	// time.Now).
	Now func() time.Time

	mu         sync.Mutex
	folders    map[string]*sinkFolder
	aliases    int
	aliasBytes int64
	moved      int
}

// Moved returns how many messages Close moved to the deleted area.
func (s *ArchiveSink) Moved() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.moved
}

// Aliases returns how many messages this sink recorded as aliases of
// bytes it held already (a renumbered folder's messages, found again by
// content), and their size: they are among those the engine counts as
// copied.
func (s *ArchiveSink) Aliases() (n int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aliases, s.aliasBytes
}

var (
	_ engine.Recorder     = (*ArchiveSink)(nil)
	_ engine.RecordWriter = (*archiveWriter)(nil)
)

// sinkFolder is what the sink knows of one archive folder in this run.
type sinkFolder struct {
	name      string
	segs      []string
	attrs     []string
	allMail   bool
	labelCopy bool
	loaded    bool
	held      []*heldRec // target UID - 1 -> record
	gone      []archive.Record
	mark      *engine.Mark // recorded once gone is moved
	// gmMessages counts the messages of the Gmail groups (gmailGroup)
	// marked into this folder in this run
	gmMessages uint32
	// rescan: content keys of messages recorded under another UIDVALIDITY
	// that no record of the current one matched yet (built on first use)
	rescan   map[string][]archive.Record
	rescanUV uint32
}

type heldRec struct {
	rec  archive.Record
	gone bool
}

// sinkUIDValidity is the UIDVALIDITY of every archive folder as a target:
// a message's target UID is its place in the folder's index.
const sinkUIDValidity = 1

func (s *ArchiveSink) folder(name string) *sinkFolder {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.folders == nil {
		s.folders = map[string]*sinkFolder{}
	}
	sf := s.folders[name]
	if sf == nil {
		sf = &sinkFolder{name: name, segs: strings.Split(name, "/")}
		s.folders[name] = sf
	}
	return sf
}

// Target is the archive folder export names the source folder: its Name.
func (s *ArchiveSink) Target(f *engine.Folder) (string, string) {
	if f.Name == "" {
		return "", "the folder has no name"
	}
	sf := s.folder(f.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	sf.allMail = f.AllMail
	af, _ := f.Handle.(*account.Folder)
	if g, ok := f.Handle.(*gmailGroup); ok && g.target != nil && g.target.Path() == f.Name {
		af = g.target // the folder a Gmail source's messages go into
	}
	if af != nil {
		segs := af.Segments
		if len(segs) > 1 && segs[0] == "Folders" && strings.Join(segs[1:], "/") == f.Name {
			segs = segs[1:]
		}
		if strings.Join(segs, "/") == f.Name {
			sf.segs = append([]string(nil), segs...)
		}
		sf.attrs = nil
		for _, a := range af.Attrs {
			switch a {
			case imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren, imap.MailboxAttrHasNoChildren, imap.MailboxAttrMarked, imap.MailboxAttrUnmarked, imap.MailboxAttrNoInferiors:
			default:
				sf.attrs = append(sf.attrs, string(a))
			}
		}
		sf.labelCopy = s.Source != nil && s.Source.Bridge() && len(af.Segments) > 1 && af.Segments[0] == "Labels" && !f.AllMail
	}
	return f.Name, ""
}

// Key is the source message's UIDVALIDITY and UID, which the index
// records.
func (s *ArchiveSink) Key(m *engine.Message) string {
	return uidKey(m.UIDValidity, m.UID)
}

func uidKey(uv, uid uint32) string {
	return "uid:" + strconv.FormatUint(uint64(uv), 10) + ":" + strconv.FormatUint(uint64(uid), 10)
}

// load reads the folder's index once per run.
func (s *ArchiveSink) load(sf *sinkFolder) error {
	if sf.loaded {
		return nil
	}
	if !s.exists(sf.name) {
		sf.loaded = true
		return nil
	}
	recs, err := s.Archive.Records(sf.name)
	if err != nil {
		return err
	}
	for _, r := range recs {
		sf.held = append(sf.held, &heldRec{rec: r})
	}
	sf.loaded = true
	return nil
}

func (s *ArchiveSink) exists(name string) bool {
	_, ok := slices.BinarySearch(s.Archive.Folders(), name)
	return ok
}

// Marked returns the source folder's state after the last export or
// migrate pass into the archive that finished with nothing left behind.
func (s *ArchiveSink) Marked(f *engine.Folder, target string) (engine.Mark, bool) {
	if g, ok := f.Handle.(*gmailGroup); ok {
		// a Gmail group is never unchanged (the metadata pass says what is
		// new): its mark counts the messages the archive holds already,
		// for the progress
		sf := s.folder(target)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.load(sf) != nil {
			return engine.Mark{}, false
		}
		have := map[uint32]bool{}
		for _, h := range sf.held {
			if !h.gone && h.rec.UIDValidity == g.uv {
				have[h.rec.UID] = true
			}
		}
		n := uint32(0)
		for _, u := range g.uids {
			if have[u] {
				n++
			}
		}
		return engine.Mark{UIDValidity: g.uv, Messages: n}, true
	}
	st := s.Archive.State(target)
	if st.UIDNext == 0 || len(st.Failed) > 0 || st.Rescan {
		return engine.Mark{}, false
	}
	return engine.Mark{UIDValidity: st.UIDValidity, UIDNext: st.UIDNext, Messages: st.Messages, ModSeq: st.ModSeq,
		Deleted: st.MirrorUIDNext == st.UIDNext && st.MirrorMessages == st.Messages}, true
}

// SetMark records the folder's state in the archive's folders.json, with
// the UIDs that failed (as export records them).
func (s *ArchiveSink) SetMark(f *engine.Folder, target string, m engine.Mark) error {
	sf := s.folder(target)
	if st := s.Archive.State(target); st.Count == 0 && st.IndexSize == 0 {
		// an empty folder: made in the archive (as export makes it), so
		// that its index file keeps the state
		fw, err := s.Archive.OpenFolder(target, sf.segs)
		if err != nil {
			return folderWriteError(err)
		}
		if err := fw.Close(); err != nil {
			return folderWriteError(err)
		}
	}
	s.mu.Lock()
	if _, ok := f.Handle.(*gmailGroup); ok {
		// a Gmail folder gathers messages of All Mail, Spam and Trash
		// (groups of their own, numbered by each mailbox): recorded as
		// export records it, the count of them all, never unchanged (the
		// metadata pass decides what is new; see gmailstate.go)
		sf.gmMessages += m.Messages
		n := sf.gmMessages
		s.mu.Unlock()
		st := s.Archive.State(target)
		s.Archive.SetStatus(target, sf.segs, sf.attrs, st.UIDValidity, 0, n, 0, nil)
		return s.Archive.SaveState()
	}
	if m.Deleted && len(sf.gone) > 0 {
		// recorded once the messages gone are moved (Close): a run cut
		// before that finds the folder changed and moves them
		sf.mark = &m
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.setMark(target, sf, m)
	return s.Archive.SaveState()
}

func (s *ArchiveSink) setMark(target string, sf *sinkFolder, m engine.Mark) {
	s.Archive.SetStatus(target, sf.segs, sf.attrs, m.UIDValidity, m.UIDNext, m.Messages, m.ModSeq, m.Failed)
	if m.Deleted {
		s.Archive.SetMirrored(target, m.UIDNext, m.Messages)
	}
}

// Recorded lists the messages the archive folder holds, from its index.
func (s *ArchiveSink) Recorded(ctx context.Context, f *engine.Folder, target string) ([]engine.Recorded, error) {
	sf := s.folder(target)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.load(sf); err != nil {
		return nil, err
	}
	var out []engine.Recorded
	for i, h := range sf.held {
		if h.gone {
			continue
		}
		r := &h.rec
		out = append(out, engine.Recorded{UIDValidity: r.UIDValidity, UID: r.UID, TUIDValidity: sinkUIDValidity, TUID: uint32(i + 1),
			Key: uidKey(r.UIDValidity, r.UID), PMID: r.PMInternalID, GmailID: r.GmailMsgID, FlagsSum: s.Archive.RecordFlagsTag(r)})
	}
	return out, nil
}

var _ engine.PlacementRecorder = (*ArchiveSink)(nil)

// GmailPlaced returns the archive folder of every Gmail message the archive
// holds, by X-GM-MSGID (read from every folder's index, once per run).
func (s *ArchiveSink) GmailPlaced(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	aliasOnly := map[string]bool{}
	for _, name := range s.Archive.Folders() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sf := s.folder(name)
		s.mu.Lock()
		err := s.load(sf)
		if err == nil {
			for _, h := range sf.held {
				r := &h.rec
				if h.gone || r.GmailMsgID == "" {
					continue
				}
				// the message's own record first; an alias line (its bytes
				// stored once already) where it has none
				if _, seen := out[r.GmailMsgID]; !seen || (aliasOnly[r.GmailMsgID] && !r.Alias) {
					out[r.GmailMsgID] = name
					aliasOnly[r.GmailMsgID] = r.Alias
				}
			}
		}
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// FlagsSum is the archive's FlagsTag of flags and labels (Gmail's labels
// for a Gmail message), as the index keeps it of every record.
func (s *ArchiveSink) FlagsSum(flags []string, labelKey string, labels []string) string {
	if strings.HasPrefix(labelKey, "gm:") {
		return s.Archive.FlagsTag(flags, archive.TagLabels(nil, labels))
	}
	return s.Archive.FlagsTag(flags, labels)
}

// Open opens an archive folder for writing; a folder the archive does not
// have opens empty when create is false.
func (s *ArchiveSink) Open(ctx context.Context, name string, create bool) (engine.FolderWriter, error) {
	sf := s.folder(name)
	s.mu.Lock()
	err := s.load(sf)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	w := &archiveWriter{s: s, sf: sf}
	if !create && !s.exists(name) {
		return w, nil
	}
	if w.fw, err = s.Archive.OpenFolder(name, sf.segs); err != nil {
		return nil, folderWriteError(err)
	}
	w.fw.LabelCopies = sf.labelCopy
	return w, nil
}

// folderWriteError is a failure to write one archive folder: the folder
// is reported and the others go on (engine.FolderError), unless no folder
// could escape it (disk full, quota, a read-only file system).
func folderWriteError(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) {
		return &engine.FatalError{Err: fmt.Errorf("writing to the archive: %w", err)}
	}
	return engine.FolderError(fmt.Errorf("could not be written to the archive (%w); the other folders were exported; fix the cause and run again: the next run tries this folder again", err))
}

// Close moves the messages found deleted on the source to the archive's
// deleted area (every folder writer is closed by then) and saves the
// archive's state.
func (s *ArchiveSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var first error
	for _, name := range slices.Sorted(maps.Keys(s.folders)) {
		sf := s.folders[name]
		if len(sf.gone) == 0 {
			continue
		}
		n, err := s.Archive.MoveDeleted(name, sf.gone, now())
		s.moved += n
		if err != nil {
			if first == nil {
				first = fmt.Errorf("folder %s: moving messages deleted on the source to %s: %w", name, archive.DeletedDir, err)
			}
			continue
		}
		sf.gone = nil
		if sf.mark != nil {
			s.setMark(name, sf, *sf.mark)
			sf.mark = nil
		}
	}
	if err := s.Archive.SaveState(); err != nil && first == nil {
		first = err
	}
	return first
}

// archiveWriter writes into one archive folder.
type archiveWriter struct {
	s  *ArchiveSink
	sf *sinkFolder
	fw *archive.FolderWriter // nil: the folder does not exist
	// answers wait for the commit of their messages: inflight for the
	// batch being made durable in the background, answers for the next
	answers, inflight []func(error)
}

func (w *archiveWriter) Exists() bool { return w.fw != nil }

func (w *archiveWriter) UIDValidity() uint32 {
	if w.fw == nil {
		return 0
	}
	return sinkUIDValidity
}

// Inventory lists the folder's messages by Key.
func (w *archiveWriter) Inventory(ctx context.Context) (map[string][]engine.Held, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	out := map[string][]engine.Held{}
	for i, h := range w.sf.held {
		if !h.gone {
			k := uidKey(h.rec.UIDValidity, h.rec.UID)
			out[k] = append(out[k], engine.Held{UID: uint32(i + 1)})
		}
	}
	return out, nil
}

// Put streams the message into the archive; done is called once it is
// durable and indexed (at the next commit: now and then, and at Flush).
func (w *archiveWriter) Put(ctx context.Context, m *engine.Message, body io.Reader, done engine.PutFunc) error {
	if w.fw == nil {
		return &engine.FatalError{Err: fmt.Errorf("folder %s was opened without create", w.sf.name)}
	}
	sf := w.sf
	meta := &message.Meta{Segments: sf.segs, UIDValidity: m.UIDValidity, UID: m.UID, Flags: append([]string{}, m.Flags...), InternalDate: m.InternalDate}
	if m.GmailID != "" {
		meta.GmailMsgID = m.GmailID
		meta.GmailThrID = m.GmailThreadID
		meta.GmailLabels = append([]string(nil), m.Labels...)
	} else if len(m.Labels) > 0 {
		meta.Labels = append([]string(nil), m.Labels...)
	}
	var scan *message.DecryptScanner
	if m.PMID != "" {
		scan = &message.DecryptScanner{}
		body = io.TeeReader(body, scan)
	}
	stored, err := w.fw.Put(meta, body, func(meta *message.Meta, here archive.Record) (*archive.Record, error) {
		if scan != nil && scan.Found {
			meta.Undecryptable = true
		}
		return w.dedup(meta, here)
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var re *account.ReadError
		if errors.As(err, &re) {
			return err // the source's connection: the engine reconnects
		}
		err = fmt.Errorf("writing %s UID %d to the archive: %w", sf.name, m.UID, err)
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS) {
			return &engine.FatalError{Err: err}
		}
		// a name or path the file system refuses, a disk error on one
		// file: this folder is reported, the others go on
		return engine.FolderError(err)
	}
	pend := w.fw.Pending()
	rec := pend[len(pend)-1]
	w.s.mu.Lock()
	sf.held = append(sf.held, &heldRec{rec: rec})
	tuid := uint32(len(sf.held))
	if !stored {
		w.s.aliases++
		w.s.aliasBytes += meta.Size
	}
	w.s.mu.Unlock()
	w.answers = append(w.answers, func(err error) {
		if err != nil {
			done(0, 0, &engine.FatalError{Err: err})
			return
		}
		done(tuid, sinkUIDValidity, nil)
	})
	if w.fw.NeedCommit() {
		// made durable in the background while the next messages come;
		// the batch is answered once it is (at the next commit, or Flush)
		prev := w.inflight
		w.inflight, w.answers = w.answers, nil
		if err := w.fw.CommitBackground(); err != nil {
			w.answers, w.inflight = append(w.inflight, w.answers...), nil
			for _, a := range prev {
				a(err)
			}
			return &engine.FatalError{Err: fmt.Errorf("folder %s: %w", sf.name, err)}
		}
		for _, a := range prev {
			a(nil)
		}
	}
	return nil
}

// dedup: after the source renumbered the folder, the same content under
// its old UID becomes an alias line; on Bridge, a message of All Mail
// already stored in another folder (it left its folders since) too.
func (w *archiveWriter) dedup(m *message.Meta, here archive.Record) (*archive.Record, error) {
	a, sf := w.s.Archive, w.sf
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if sf.rescan == nil || sf.rescanUV != m.UIDValidity {
		sf.rescan, sf.rescanUV = w.rescanSet(m.UIDValidity), m.UIDValidity
	}
	k := a.MetaKey(m)
	if recs := sf.rescan[k]; len(recs) > 0 {
		r := recs[0]
		sf.rescan[k] = recs[1:]
		return &r, nil
	}
	if m.PMInternalID != "" && !sf.labelCopy {
		orig, err := a.ClaimPMID(m.PMInternalID, here)
		if err != nil {
			return nil, err
		}
		if orig != nil && sf.allMail {
			return orig, nil
		}
	}
	return nil, nil
}

// rescanSet builds the content keys of messages recorded under another
// UIDVALIDITY than current that no record of current matches.
func (w *archiveWriter) rescanSet(current uint32) map[string][]archive.Record {
	a := w.s.Archive
	type gen struct {
		uv  uint32
		key string
	}
	count := map[gen]int{}
	loc := map[string]archive.Record{}
	for _, h := range w.sf.held {
		if h.gone {
			continue
		}
		r := h.rec
		k := a.RecordKey(&r)
		count[gen{r.UIDValidity, k}]++
		if _, ok := loc[k]; !ok || (loc[k].Alias && !r.Alias) {
			loc[k] = r
		}
	}
	avail := map[string]int{}
	for g, n := range count {
		if g.uv != current && n > avail[g.key] {
			avail[g.key] = n
		}
	}
	out := map[string][]archive.Record{}
	for k, n := range avail {
		n -= count[gen{current, k}]
		for i := 0; i < n; i++ {
			out[k] = append(out[k], loc[k])
		}
	}
	return out
}

// Flush commits what was written (durable, then indexed) and answers.
func (w *archiveWriter) Flush() error {
	if w.fw == nil {
		return nil
	}
	err := w.fw.Commit() // waits for the background commit first
	answers := append(w.inflight, w.answers...)
	w.inflight, w.answers = nil, nil
	for _, a := range answers {
		a(err)
	}
	if err != nil {
		return &engine.FatalError{Err: fmt.Errorf("folder %s: %w", w.sf.name, err)}
	}
	return nil
}

// Store records changed flags of messages (by target UID).
func (w *archiveWriter) Store(uids []uint32, add, remove []string) error {
	for _, u := range uids {
		h := w.held(u)
		if h == nil {
			continue
		}
		set := map[string]string{}
		for _, f := range h.rec.Flags {
			set[strings.ToLower(f)] = f
		}
		for _, f := range add {
			set[strings.ToLower(f)] = f
		}
		for _, f := range remove {
			delete(set, strings.ToLower(f))
		}
		flags := slices.Sorted(maps.Values(set))
		if err := w.SetFlags(u, flags, engine.LabelKey(h.rec.PMInternalID, h.rec.GmailMsgID), labelsOf(&h.rec)); err != nil {
			return err
		}
	}
	return nil
}

func labelsOf(r *archive.Record) []string {
	if r.GmailMsgID != "" {
		return r.GmailLabels
	}
	return r.Labels
}

func (w *archiveWriter) held(tuid uint32) *heldRec {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if tuid == 0 || int(tuid) > len(w.sf.held) || w.sf.held[tuid-1].gone {
		return nil
	}
	return w.sf.held[tuid-1]
}

// SetFlags records a message's flags and labels whole (a flags_update line).
func (w *archiveWriter) SetFlags(tuid uint32, flags []string, labelKey string, labels []string) error {
	h := w.held(tuid)
	if h == nil || w.fw == nil {
		return nil
	}
	if labels == nil {
		labels = []string{}
	}
	w.s.mu.Lock()
	r := &h.rec
	if strings.HasPrefix(labelKey, "gm:") {
		w.fw.UpdateGmail(r.UIDValidity, r.UID, flags, labels)
		r.GmailLabels = labels
	} else {
		var l []string // nil: unchanged
		if labelKey != "" {
			l = labels
			r.Labels = labels
		}
		w.fw.UpdateFlags(r.UIDValidity, r.UID, flags, l)
	}
	r.Flags, r.FlagsSum = flags, ""
	if w.s.Archive.Encrypted() {
		r.FlagsSum = w.s.FlagsSum(flags, labelKey, labels)
	}
	w.s.mu.Unlock()
	return nil
}

// Delete takes messages out of the folder: they go to the archive's
// deleted area when the sink is closed (nothing is erased).
func (w *archiveWriter) Delete(uids []uint32) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for _, u := range uids {
		if u == 0 || int(u) > len(w.sf.held) {
			continue
		}
		h := w.sf.held[u-1]
		if !h.gone {
			h.gone = true
			w.sf.gone = append(w.sf.gone, h.rec)
		}
	}
	return nil
}

// Unstorable: an archive stores every flag and keyword.
func (w *archiveWriter) Unstorable(flags []string) []string { return nil }

// Settle has nothing to wait for: a message is answered once durable.
func (w *archiveWriter) Settle(ctx context.Context) {}

// Close commits what was written and closes the folder's files.
func (w *archiveWriter) Close(err error) {
	if w.fw == nil {
		return
	}
	w.Flush()
	w.fw.Close()
}
