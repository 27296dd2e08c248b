package export

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/message"
)

// IMAPSource reads an IMAP account, never changing it (EXAMINE,
// BODY.PEEK), with go-imap's traps guarded (account's literal length check
// and idle timeout; every UID asked for is accounted for). On Proton Mail
// Bridge it follows export's rules: each Proton message once in each of its
// folders, labels from the Labels/... and Starred views, and All Mail's
// messages that are in no folder, decided after complete passes over every
// folder.
type IMAPSource struct {
	// Account is the source account.
	Account *account.Config
	// Conn, if set, is a logged-in connection to use first.
	Conn *account.Conn
	// Include and Exclude are folder globs as for
	Include, Exclude []string
	// Labels is what happens to Proton and Gmail labels.
	LabelMode engine.LabelMode
	// Budget, if set, is --max-bytes-per-day (download) on a Gmail source.
	Budget *account.DailyBudget
	// Log, if set, receives warnings.
	Log func(format string, a ...any)
	// GmailRecorded: on a Gmail source, the sink records what Gmail says
	// of each message (an archive): labels are X-GM-LABELS as Gmail gives
	// them, and the metadata of the metadata pass is all the engine gets
	// (no other FETCH but the bodies'). Otherwise labels are taken as
	// gmailLabels says (for an IMAP target's keywords).
	GmailRecorded bool
	// ChunkSize is how many bodies a Gmail source asks for in one UID
	// FETCH (default 1000).
	ChunkSize int
	// AsIs lists every selectable folder under its own path and reads it
	// whole: no Bridge plan (Folders/, Labels/, All Mail as they are) and
	// no Gmail model. verify reads a target account back this way, as
	// the messages were put there; Proton labels are still read on Bridge.
	AsIs bool
	// GmailMirror, with Delete, lists the folders a Gmail source's
	// messages may have been placed in by earlier runs (export --mirror:
	// the archive's folders). Each is given a group, empty if need be, for
	// every mailbox of the metadata pass (All Mail, Spam, Trash), so that
	// the engine finds the messages deleted from a folder that none of
	// them holds any more (a label's last message, an emptied Trash).
	GmailMirror []string
	// KeepConn: Conn is the caller's, who goes on using it: the source
	// uses it among its connections, but never logs it out or closes it.
	KeepConn bool

	mu        sync.Mutex
	pool      account.Pool
	bridge    bool
	labels    map[string][]string // X-Pm-Internal-Id -> labels
	real      []*account.Folder   // Bridge folders that are not views
	sel       map[*account.Folder]bool
	condstore bool
	gmail     bool
	gmailAcct bool // the server is Gmail (X-GM-EXT-1)
	// Gmail (X-GM-EXT-1, gmailsource.go)
	placed   func(string) string
	gmLabels map[string][]string // "gm:"+X-GM-MSGID -> labels
	gmHeld   map[string]bool
	// listed, if set, is the LIST Folders uses (export.Run read it)
	listed []*account.Folder
	// excluded: Bridge folder -> messages left out of its last pass
	// because they are only in folders --folder/--exclude leave out
	excluded map[string]int
	allMail  *engine.Folder // Bridge's All Mail, when copied
	// Bridge's label mailboxes, read by the first Open (loadLabels)
	labelMu    sync.Mutex
	labelBoxes []*account.Folder
	labelsDone bool
}

// BridgeSyncing reports whether Proton Mail Bridge's All Mail holds
// another number of messages than when the folders were listed: Bridge
// fills its mailboxes during its first sync, for hours on a big account,
// and a later run will find more.
func (s *IMAPSource) BridgeSyncing(ctx context.Context) bool {
	if !s.bridge || s.allMail == nil {
		return false
	}
	af := s.allMail.Handle.(*account.Folder)
	if af.Status == nil || af.Status.NumMessages == nil {
		return false
	}
	c, err := s.conn(ctx)
	if err != nil {
		return false
	}
	sd, err := c.Status(af.Name, &imap.StatusOptions{NumMessages: true}).Wait()
	s.release(c, err)
	return err == nil && sd.NumMessages != nil && *sd.NumMessages != *af.Status.NumMessages
}

// Excluded counts the messages of Bridge's All Mail (and, with labels as
// folders, of Labels/...) left out because they are in folders that
// Include/Exclude leave out.
func (s *IMAPSource) Excluded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.excluded {
		n += c
	}
	return n
}

// excludes reports whether Include/Exclude leave out a Bridge folder.
func (s *IMAPSource) excludes() bool {
	for _, f := range s.real {
		if !s.sel[f] {
			return true
		}
	}
	return false
}

var _ engine.Source = (*IMAPSource)(nil)

func (s *IMAPSource) conn(ctx context.Context) (*account.Conn, error) {
	return s.pool.Get(ctx, s.Account)
}

func (s *IMAPSource) release(c *account.Conn, err error) {
	if err != nil && IsConnErr(c, err) {
		c.Close()
		return
	}
	if err != nil && !account.IsIMAPError(err) {
		c.Close()
		return
	}
	s.pool.Put(c)
}

// Gmail reports whether the source was read with Gmail's model (each
// message once, placed by X-GM-MSGID; see gmailsource.go).
func (s *IMAPSource) Gmail() bool { return s.gmail }

// Bridge reports whether the source is Proton Mail Bridge.
func (s *IMAPSource) Bridge() bool { return s.bridge }

// GmailAccount reports whether the account is Gmail (X-GM-EXT-1), however
// it was read (after Folders).
func (s *IMAPSource) GmailAccount() bool { return s.gmailAcct }

// Labels returns the labels of a Proton message (by X-Pm-Internal-Id) or
// of a Gmail message (by engine.LabelKey).
func (s *IMAPSource) Labels(key string) []string {
	if key == "" {
		return nil
	}
	if strings.HasPrefix(key, "gm:") {
		return s.gmLabels[key]
	}
	return s.labels[key]
}

// Close logs out.
func (s *IMAPSource) Close() error {
	s.pool.CloseAll()
	return nil
}

var roles = []imap.MailboxAttr{imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrArchive, imap.MailboxAttrAll, imap.MailboxAttrFlagged}

// Folders lists the folders to copy (export's plan), and on Bridge reads
// the labels.
func (s *IMAPSource) Folders(ctx context.Context) ([]*engine.Folder, error) {
	c := s.Conn
	s.Conn = nil
	if c == nil {
		var err error
		if c, err = s.Account.Dial(ctx); err != nil {
			return nil, err
		}
	}
	if s.KeepConn {
		s.pool.Keep(c)
	}
	defer func() { s.release(c, nil) }()
	s.bridge = s.Account.URL.Bridge || c.IsBridge()
	s.condstore = c.Caps().Has(imap.CapCondStore)
	list := s.listed
	if list == nil {
		var err error
		if list, err = c.ListFolders(); err != nil {
			return nil, fmt.Errorf("listing folders: %w", err)
		}
	}
	s.listed = list
	s.gmailAcct = !s.bridge && c.IsGmail()
	if s.AsIs {
		return s.asIs(list), nil
	}
	if !s.bridge && c.IsGmail() && s.LabelMode != engine.LabelsFolders {
		s.gmail = true
		return s.gmailFolders(ctx, list)
	}
	mode := LabelsAsMetadata
	if s.LabelMode == engine.LabelsFolders {
		mode = LabelsAsFolders
	}
	var out []*engine.Folder
	s.sel = map[*account.Folder]bool{}
	for _, p := range PlanFolders(list, s.bridge, mode, s.Include, s.Exclude) {
		f := folderOf(p.Folder, p.Name)
		f.AllMail = p.AllMail
		s.sel[p.Folder] = true
		if p.AllMail {
			s.allMail = f
		}
		out = append(out, f)
	}
	s.findLabelBoxes(list)
	return out, nil
}

// asIs lists every selectable folder under its own path (AsIs).
func (s *IMAPSource) asIs(list []*account.Folder) []*engine.Folder {
	var out []*engine.Folder
	s.sel = map[*account.Folder]bool{}
	for _, af := range list {
		if !af.Selectable() {
			continue
		}
		s.sel[af] = true
		out = append(out, folderOf(af, af.Path()))
	}
	s.findLabelBoxes(list)
	return out
}

// folderOf is the engine's folder for a server folder, under a name: its
// special use and the status the listing gave.
func folderOf(af *account.Folder, name string) *engine.Folder {
	f := &engine.Folder{Name: name, Handle: af, Role: roleOf(af)}
	if st := af.Status; st != nil {
		if st.NumMessages != nil {
			f.Messages = *st.NumMessages
		}
		if st.Size != nil {
			f.Bytes = *st.Size
		}
		f.UIDValidity, f.UIDNext, f.ModSeq = st.UIDValidity, uint32(st.UIDNext), st.HighestModSeq
	}
	return f
}

// roleOf is a folder's special use ("" when it has none, or af is nil).
func roleOf(af *account.Folder) string {
	role := ""
	if af != nil {
		for _, a := range roles {
			if af.Has(a) {
				role = string(a)
			}
		}
	}
	return role
}

// Listing is the account's folders as the source listed them (after
// Folders).
func (s *IMAPSource) Listing() []*account.Folder { return s.listed }

// Abort closes every connection of the source at once, whatever they wait
// for (Ctrl-C), but a connection the caller lent (KeepConn).
func (s *IMAPSource) Abort() { s.pool.Abort() }

// findLabelBoxes notes, on Bridge, the folders that are not views and the
// label mailboxes (Labels/..., Starred) whose messages give the labels.
func (s *IMAPSource) findLabelBoxes(list []*account.Folder) {
	if s.bridge {
		s.labels = map[string][]string{}
		for _, f := range list {
			if !f.Selectable() {
				continue
			}
			segs := f.Segments
			isView := f.Has(imap.MailboxAttrAll) || f.Name == "All Mail"
			isLabel := f.Has(imap.MailboxAttrFlagged) || f.Name == "Starred" || f.Name == "Scheduled" || (len(segs) > 1 && segs[0] == "Labels")
			if !isView && !isLabel {
				s.real = append(s.real, f)
			}
			if !isLabel || f.Name == "Scheduled" || (s.LabelMode == engine.LabelsSkip && f.Name != "Starred" && !f.Has(imap.MailboxAttrFlagged)) {
				continue
			}
			s.labelBoxes = append(s.labelBoxes, f)
		}
	}
}

// loadLabels reads, once, the X-Pm-Internal-Id of every message in
// Bridge's label mailboxes (Labels/..., Starred): only when a folder is
// opened, so that a run that finds every folder unchanged does not read
// them.
func (s *IMAPSource) loadLabels(c *account.Conn) error {
	s.labelMu.Lock()
	defer s.labelMu.Unlock()
	if s.labelsDone || !s.bridge {
		return nil
	}
	labels := map[string][]string{}
	for _, f := range s.labelBoxes {
		sel, err := c.Examine(f.Name)
		if err != nil {
			return err
		}
		var ids map[uint32]string
		if sel.NumMessages > 0 {
			if ids, err = c.FetchHeaderField("X-Pm-Internal-Id"); err != nil {
				return fmt.Errorf("reading the labels of %q: %w", f.Name, err)
			}
		}
		segs := f.Segments
		label := f.Path()
		if len(segs) > 1 && segs[0] == "Labels" {
			label = strings.Join(segs[1:], "/")
		}
		if f.Has(imap.MailboxAttrFlagged) {
			label = "Starred"
		}
		for _, id := range ids {
			if id != "" {
				labels[id] = append(labels[id], label)
			}
		}
	}
	s.labels, s.labelsDone = labels, true
	return nil
}

// Open examines a folder.
func (s *IMAPSource) Open(ctx context.Context, f *engine.Folder) (engine.FolderReader, error) {
	if g, ok := f.Handle.(*gmailGroup); ok {
		return s.openGmail(ctx, f, g)
	}
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.loadLabels(c); err != nil {
		s.release(c, err)
		return nil, err
	}
	af := f.Handle.(*account.Folder)
	sel, err := c.Examine(af.Name)
	if err != nil {
		s.release(c, err)
		if account.IsIMAPError(err) {
			return nil, engine.FolderError(fmt.Errorf("the source refused to open %q: %w", af.Name, err))
		}
		return nil, err
	}
	return &imapReader{s: s, c: c, f: f, af: af, sel: sel}, nil
}

type imapReader struct {
	s   *IMAPSource
	c   *account.Conn
	f   *engine.Folder
	af  *account.Folder
	sel *imap.SelectData
}

func (r *imapReader) State() (uint32, uint64) {
	if !r.s.condstore {
		return r.sel.UIDValidity, 0
	}
	if r.sel.HighestModSeq == 0 && r.sel.UIDValidity == r.f.UIDValidity {
		// EXAMINE says HIGHESTMODSEQ only once CONDSTORE is enabled; the
		// STATUS of the listing (earlier, so never newer) does
		return r.sel.UIDValidity, r.f.ModSeq
	}
	return r.sel.UIDValidity, r.sel.HighestModSeq
}

func (r *imapReader) Close(err error) { r.s.release(r.c, err) }

// UIDs lists the folder's UIDs (SEARCH SINCE/BEFORE for a date range). On
// Bridge's All Mail, only those of messages in no folder.
func (r *imapReader) UIDs(ctx context.Context, sel engine.Select) ([]uint32, error) {
	if r.sel.NumMessages == 0 {
		return nil, nil
	}
	var uids []uint32
	var err error
	if sel == (engine.Select{}) {
		uids, err = r.c.UIDsAbove(0)
	} else {
		crit := &imap.SearchCriteria{Since: sel.Since, Before: sel.Before}
		var sd *imap.SearchData
		sd, err = r.c.UIDSearch(crit, nil).Wait()
		if err == nil {
			for _, u := range sd.AllUIDs() {
				uids = append(uids, uint32(u))
			}
		}
	}
	if err != nil {
		return uids, err
	}
	if r.f.AllMail {
		return r.orphans(ctx, uids, false)
	}
	if r.s.bridge && r.s.LabelMode == engine.LabelsFolders && len(r.af.Segments) > 1 && r.af.Segments[0] == "Labels" && r.s.excludes() {
		// a label's copies of messages only in excluded folders are
		// left out too
		return r.orphans(ctx, uids, true)
	}
	return uids, nil
}

// orphans keeps the All Mail UIDs whose messages are in no folder, from a
// complete pass over every folder (selected or not); a message in an
// excluded folder only is left out (and counted). With labels (a
// Labels/... folder copied as a folder), it keeps every UID but those.
func (r *imapReader) orphans(ctx context.Context, uids []uint32, labels bool) ([]uint32, error) {
	c := r.c
	ids, err := IDsOf(c, r.af.Name, uids)
	if err != nil {
		return nil, err
	}
	inFolders := map[string]bool{}
	for _, f := range r.s.real {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sel, err := c.Examine(f.Name)
		if err != nil {
			return nil, err
		}
		if sel.NumMessages == 0 {
			continue
		}
		all, err := c.UIDsAbove(0)
		if err != nil {
			return nil, err
		}
		got, err := IDsOf(c, f.Name, all)
		if err != nil {
			return nil, err
		}
		for _, id := range got {
			if id != "" {
				inFolders[id] = inFolders[id] || r.s.sel[f]
			}
		}
	}
	sel, err := c.Examine(r.af.Name)
	if err != nil {
		return nil, err
	}
	if sel.UIDValidity != r.sel.UIDValidity {
		return nil, &UnaccountedError{Mailbox: r.af.Name, UIDs: uids}
	}
	var out []uint32
	excluded := 0
	for _, u := range uids {
		id, there := ids[u]
		if !there {
			continue
		}
		selected, in := inFolders[id]
		switch {
		case id == "":
			out = append(out, u) // no Proton ID: cannot be matched, kept
		case in && !selected:
			excluded++
		case in && !labels:
			// in a folder: copied there
		default:
			out = append(out, u)
		}
	}
	r.s.mu.Lock()
	if r.s.excluded == nil {
		r.s.excluded = map[string]int{}
	}
	r.s.excluded[r.f.Name] = excluded
	r.s.mu.Unlock()
	return out, nil
}

func (r *imapReader) Flags(ctx context.Context, changedSince uint64) (map[uint32][]string, error) {
	out := map[uint32][]string{}
	if r.sel.NumMessages == 0 {
		return out, nil
	}
	var set imap.UIDSet
	set.AddRange(1, 0)
	fo := &imap.FetchOptions{UID: true, Flags: true}
	if changedSince != 0 {
		fo.ChangedSince = changedSince
	}
	fc := r.c.Fetch(set, fo)
	for m := fc.Next(); m != nil; m = fc.Next() {
		buf, err := m.Collect()
		if err != nil {
			fc.Close()
			return nil, fmt.Errorf("UID FETCH (FLAGS): %w", err)
		}
		if buf.UID == 0 {
			continue
		}
		flags := []string{}
		for _, f := range buf.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				flags = append(flags, string(f))
			}
		}
		out[uint32(buf.UID)] = flags
	}
	if err := fc.Close(); err != nil {
		return nil, fmt.Errorf("UID FETCH (FLAGS): %w", err)
	}
	return out, nil
}

// Meta fetches flags, date, size and engine.Message-ID (and X-Pm-Internal-Id)
// of uids; for messages without engine.Message-ID, the SHA-256 of the header.
func (r *imapReader) Meta(ctx context.Context, uids []uint32) (map[uint32]*engine.Message, error) {
	out := map[uint32]*engine.Message{}
	if len(uids) == 0 {
		return out, nil
	}
	var refused []uint32
	var refusal error
	for i := 0; i < len(uids); i += 2000 {
		part := uids[i:min(i+2000, len(uids))]
		err := undelivered(r.c, r.paced(ctx, func() error { return r.meta(part, out) }))
		var ue *engine.UndeliveredError
		if errors.As(err, &ue) {
			// one message the server will not describe fails the whole
			// FETCH: each alone
			for _, u := range part {
				if _, ok := out[u]; ok {
					continue
				}
				if err := undelivered(r.c, r.meta([]uint32{u}, out)); errors.As(err, &ue) {
					refused, refusal = append(refused, u), ue.Err
				} else if err != nil {
					return nil, err
				}
			}
			err = nil
		}
		if err != nil {
			return nil, err
		}
	}
	isRefused := map[uint32]bool{}
	for _, u := range refused {
		isRefused[u] = true
	}
	var missing []uint32
	for _, u := range uids {
		if _, ok := out[u]; !ok && !isRefused[u] {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		// expunged since the SEARCH, or left out by the server: asked once more
		still, err := r.c.UIDsIn(missing)
		if err != nil {
			return nil, err
		}
		if err := r.meta(still, out); err != nil {
			return nil, err
		}
		for _, u := range still {
			if _, ok := out[u]; !ok {
				return nil, fmt.Errorf("the server did not describe UID %d of %q (flags, date, size)", u, r.af.Name)
			}
		}
	}
	var noID []uint32
	for u, m := range out {
		if m.MessageID == "" {
			noID = append(noID, u)
		}
	}
	if len(noID) > 0 {
		hashes, err := r.c.HeaderHashes(noID)
		if err != nil {
			return nil, err
		}
		for u, h := range hashes {
			out[u].HeaderHash = h
		}
	}
	if len(refused) > 0 {
		return out, &engine.UndeliveredError{Err: refusal, UIDs: refused}
	}
	return out, nil
}

func (r *imapReader) meta(uids []uint32, out map[uint32]*engine.Message) error {
	if len(uids) == 0 {
		return nil
	}
	sec := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-Id", "X-Pm-Internal-Id"}}
	fc := r.c.Fetch(account.UIDSet(uids), &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{sec}})
	for m := fc.Next(); m != nil; m = fc.Next() {
		buf, err := m.Collect()
		if err != nil {
			fc.Close()
			return fmt.Errorf("UID FETCH (FLAGS INTERNALDATE RFC822.SIZE): %w", err)
		}
		if buf.UID == 0 {
			continue
		}
		msg := &engine.Message{Folder: r.f.Name, UIDValidity: r.sel.UIDValidity, UID: uint32(buf.UID), Size: buf.RFC822Size, InternalDate: buf.InternalDate, Flags: []string{}}
		for _, f := range buf.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				msg.Flags = append(msg.Flags, string(f))
			}
		}
		var hdr []byte
		for _, bs := range buf.BodySection {
			hdr = bs.Bytes
		}
		msg.MessageID, msg.PMID = account.HeaderIDs(hdr)
		out[msg.UID] = msg
	}
	if err := fc.Close(); err != nil {
		return fmt.Errorf("UID FETCH (FLAGS INTERNALDATE RFC822.SIZE): %w", err)
	}
	return nil
}

// Fetch streams BODY.PEEK[] of uids (account.FetchBodies: the literal's
// length is checked), asking by sequence number for what a server answered
// in a shape go-imap drops.
func (r *imapReader) Fetch(ctx context.Context, uids []uint32, fn engine.BodyFunc) (done map[uint32]bool, err error) {
	defer func() { err = undelivered(r.c, err) }()
	done = map[uint32]bool{}
	for i := 0; i < len(uids); i += 1000 {
		part := uids[i:min(i+1000, len(uids))]
		left := func() []uint32 {
			var rest []uint32
			for _, u := range part {
				if !done[u] {
					rest = append(rest, u)
				}
			}
			return rest
		}
		err := r.paced(ctx, func() error {
			got, err := r.c.FetchBodies(left(), account.BodyFunc(fn))
			for u := range got {
				done[u] = true
			}
			return err
		})
		if err != nil {
			return done, err
		}
		rest := left()
		if len(rest) > 0 {
			// go-imap drops an answer whose UID comes after the body: ask
			// by sequence number
			meta, err := r.c.FetchMeta(rest)
			if err != nil {
				return done, err
			}
			seqs := map[uint32]uint32{}
			for u, m := range meta {
				if m.Seq != 0 {
					seqs[m.Seq] = u
				}
			}
			more, err := r.c.FetchBodiesBySeq(seqs, account.BodyFunc(fn))
			for u := range more {
				done[u] = true
			}
			if err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// paced runs fn again while the server throttles it (Microsoft: "Request
// is throttled. Suggested Backoff Time: N milliseconds"), waiting as asked,
// at most 10 times: a throttled answer is no failure of the connection.
func (r *imapReader) paced(ctx context.Context, fn func() error) error {
	for n := 0; ; n++ {
		err := fn()
		d, ok := account.ThrottleBackoff(err)
		if !ok || n >= 10 {
			return err
		}
		if r.s.Log != nil {
			r.s.Log("folder %s: %v; waiting %v as the server asks", r.f.Name, err, d)
		}
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// undelivered marks a NO to a body FETCH on a connection that still works
// as the source refusing those messages (engine.UndeliveredError): the
// engine asks for them again one by one and reports those still refused,
// instead of reconnecting. A throttling answer and a daily cap stay as
// they are.
func undelivered(c *account.Conn, err error) error {
	var ie *imap.Error
	if err == nil || !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
		return err
	}
	if _, ok := account.ThrottleBackoff(err); ok {
		return err
	}
	if account.AsCapError(err, "download", false) != nil || IsConnErr(c, err) {
		return err
	}
	return &engine.UndeliveredError{Err: err}
}

var _ engine.Describer = (*imapReader)(nil)

// Describe fetches the Subject and Date header fields of uids (verify's
// reports).
func (r *imapReader) Describe(ctx context.Context, uids []uint32) (map[uint32]engine.Description, error) {
	hdrs, err := r.c.FetchHeaderFields(uids, "Subject", "Date")
	if err != nil {
		return nil, err
	}
	out := map[uint32]engine.Description{}
	for u, hdr := range hdrs {
		subject, date := message.SubjectDate(hdr)
		out[u] = engine.Description{Subject: subject, Date: date}
	}
	return out, nil
}
