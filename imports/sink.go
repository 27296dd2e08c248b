package imports

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
)

// Batching of appends where the target has MULTIAPPEND and LITERAL+: small
// messages are held in one buffer per folder at work (reused, sinkBatchBytes +
// sinkStreamThreshold at most) until a batch is full; a message above
// sinkStreamThreshold goes straight from the source's FETCH literal into an
// APPEND literal of its own, never held. Memory stays bounded whatever the
// message sizes. Dovecot saves a batch in one transaction (one fsync), so
// fewer, fuller batches are faster.
const (
	sinkBatchMessages   = 100
	sinkBatchBytes      = 6 << 20
	sinkStreamThreshold = 1 << 20
	sinkInFlight        = 4
)

// IMAPSink writes into an IMAP account with the import's rules: target
// folders by special use, --map and --prefix; flags as PERMANENTFLAGS
// allows; MULTIAPPEND batches where the server has them, else pipelined
// APPENDs; on Proton Mail Bridge its rules as a target (folders under
// Folders/, a From and a Date header needed, 70 MiB at most, Bridge's
// X-Pm-Gluon-Id not sent, messages recognised by engine.Message-ID alone).
type IMAPSink struct {
	// Account is the target account.
	Account *account.Config
	// Conn, if set, is a logged-in connection to use first.
	Conn *account.Conn
	// Map, Prefix and engine.Folder are as for import.
	Map    map[string]string
	Prefix string
	Folder string
	// Budget, if set, is --max-bytes-per-day (upload).
	Budget *account.DailyBudget
	// Verb names the command in advice ("import", "migrate"; default
	// "command").
	Verb string

	mu    sync.Mutex
	gmail bool
	limit int64 // APPENDLIMIT, 0: none
	// Unlabelled are the messages stored whose Gmail labels could not be set.
	Unlabelled []engine.Failure
	pool       account.Pool
	bridge     bool
	delim      rune
	folders    []*account.Folder
	byPath     map[string]*account.Folder
	noMA       bool
	arenas     [][]byte // batch buffers free for the next folder
	conns      connSet  // every connection made, for Abort
}

// connSet closes every connection of a run when its context ends, so that
// Ctrl-C and SIGTERM stop a run whatever it waits for.
type connSet struct {
	mu     sync.Mutex
	closed bool
	fns    map[any]func()
}

// add registers the close function of a connection (once per key); after
// closeAll it runs at once.
func (s *connSet) add(key any, fn func()) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		if s.fns == nil {
			s.fns = map[any]func(){}
		}
		s.fns[key] = fn
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

// Abort closes every connection the sink made, at once, whatever they
// wait for (Ctrl-C): what is in flight is not completed, and the run
// stops.
func (s *IMAPSink) Abort() { s.conns.closeAll() }

var _ engine.Sink = (*IMAPSink)(nil)

// Start logs in and lists the target's folders.
func (s *IMAPSink) Start(ctx context.Context) error {
	c := s.Conn
	s.Conn = nil
	if c == nil {
		var err error
		if c, err = s.Account.Dial(ctx); err != nil {
			return err
		}
	}
	s.conns.add(c, func() { c.Close() })
	s.bridge = s.Account.URL.Bridge || c.IsBridge()
	s.gmail = !s.bridge && c.IsGmail()
	if l, ok := c.Caps().AppendLimit(); ok && l != nil {
		s.limit = int64(*l)
	}
	list, err := c.ListFolders()
	if err != nil {
		c.Close()
		return fmt.Errorf("listing the target's folders: %w", err)
	}
	s.folders = list
	s.byPath = map[string]*account.Folder{}
	s.delim = '/'
	for _, f := range list {
		s.byPath[f.Path()] = f
		if f.Delim != 0 {
			s.delim = f.Delim
		}
	}
	s.release(c, nil)
	return nil
}

// overQuota is the error that stops a run at a full target.
func (s *IMAPSink) overQuota(ie *imap.Error) error {
	verb := s.Verb
	if verb == "" {
		verb = "command"
	}
	return fmt.Errorf("%w (%s): free space or raise the quota, then run the same %s again; it goes on where it stopped", ErrOverQuota, ie.Text, verb)
}

// HasFolder reports whether the target holds a folder ("/" between levels).
func (s *IMAPSink) HasFolder(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.byPath[name]
	return ok
}

// Bridge reports whether the target is Proton Mail Bridge.
func (s *IMAPSink) Bridge() bool { return s.bridge }

// TakesLabels reports whether the target sets labels itself, so that they
// do not become keywords: Gmail (a message is appended once, into its
// folder, and its labels are set with UID STORE +X-GM-LABELS from
// APPENDUID) and Proton Mail Bridge (a COPY into Labels/<label>, which
// labels the same Proton message; Bridge keeps no keywords).
func (s *IMAPSink) TakesLabels() bool { return s.gmail || s.bridge }

// Gmail reports whether the target is Gmail (X-GM-EXT-1).
func (s *IMAPSink) Gmail() bool { return s.gmail }

func (s *IMAPSink) conn(ctx context.Context) (*account.Conn, error) {
	c, err := s.pool.Get(ctx, s.Account)
	if err == nil {
		s.conns.add(c, func() { c.Close() })
	}
	return c, err
}

func (s *IMAPSink) release(c *account.Conn, err error) {
	if err != nil && !account.IsIMAPError(err) {
		c.Close()
		return
	}
	s.pool.Put(c)
}

// Close logs out.
func (s *IMAPSink) Close() error {
	s.pool.CloseAll()
	return nil
}

// MappingSink returns an IMAPSink that only maps folders (Target): the
// target's folders as listed, whether it is Proton Mail Bridge or Gmail,
// and --map / --prefix. It is never started and writes nothing; verify
// uses it to name a source folder's target exactly as import and migrate
// place messages.
func MappingSink(folders []*account.Folder, bridge, gmail bool, mp map[string]string, prefix string) *IMAPSink {
	return &IMAPSink{Map: mp, Prefix: prefix, folders: folders, bridge: bridge, gmail: gmail && !bridge}
}

// Target maps a source folder as an import maps an archive's folder.
func (s *IMAPSink) Target(f *engine.Folder) (string, string) {
	o := Options{Map: s.Map, Prefix: s.Prefix, Folder: s.Folder, gmail: s.gmail}
	if s.gmail && (f.Role == `\All` || f.AllMail) && s.Map[f.Name] == "" && s.Folder == "" && s.Prefix == "" {
		// Gmail: archived mail is mail in All Mail alone
		for _, t := range s.folders {
			if t.Has(imap.MailboxAttrAll) {
				return t.Path(), ""
			}
		}
	}
	name := f.Name
	if f.AllMail {
		name = "All Mail"
	}
	return o.TargetFolder(name, f.Role, s.folders, s.bridge)
}

// Key is engine.Message-ID and size (Bridge: engine.Message-ID alone, as Bridge rebuilds
// messages).
func (s *IMAPSink) Key(m *engine.Message) string {
	if s.bridge && m.MessageID != "" {
		return "id:" + m.MessageID
	}
	return engine.KeyOf(m)
}

func (s *IMAPSink) serverName(segs []string) string {
	parts := make([]string, len(segs))
	for i, seg := range segs {
		if s.delim != '/' {
			seg = strings.ReplaceAll(seg, string(s.delim), "_")
		}
		parts[i] = seg
	}
	return strings.Join(parts, string(s.delim))
}

// create makes a folder and its parents, top down.
func (s *IMAPSink) create(c *account.Conn, segs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range segs {
		p := strings.Join(segs[:i+1], "/")
		if _, ok := s.byPath[p]; ok {
			continue
		}
		if s.bridge && (p == "Folders" || p == "Labels") {
			continue
		}
		name := s.serverName(segs[:i+1])
		if err := c.Create(name, nil).Wait(); err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
				if account.IsIMAPError(err) {
					return engine.FolderError(fmt.Errorf("the target refused to create folder %q: %w", name, err))
				}
				return fmt.Errorf("creating folder %q: %w", name, err)
			}
		}
		s.byPath[p] = &account.Folder{Name: name, Segments: segs[:i+1]}
	}
	return nil
}

// Open selects (and creates) a target folder.
func (s *IMAPSink) Open(ctx context.Context, name string, create bool) (engine.FolderWriter, error) {
	segs := strings.Split(name, "/")
	s.mu.Lock()
	f, exists := s.byPath[name]
	s.mu.Unlock()
	server := s.serverName(segs)
	if exists {
		server = f.Name
	}
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	w := &imapWriter{s: s, c: c, name: name, server: server, drafts: strings.EqualFold(name, "Drafts")}
	if !exists && !create {
		return w, nil
	}
	if !exists {
		if err := s.create(c, segs); err != nil {
			s.release(c, err)
			return nil, err
		}
	}
	sel, err := c.Select(server, nil).Wait()
	if err != nil {
		s.release(c, err)
		if account.IsIMAPError(err) {
			return nil, engine.FolderError(fmt.Errorf("the target refused to open folder %q: %w", server, err))
		}
		return nil, fmt.Errorf("SELECT %q: %w", server, err)
	}
	w.exists = true
	w.uv = sel.UIDValidity
	if sel.PermanentFlags != nil {
		w.perm = []string{}
		for _, f := range sel.PermanentFlags {
			w.perm = append(w.perm, string(f))
		}
	}
	return w, nil
}

type imapWriter struct {
	s      *IMAPSink
	c      *account.Conn
	name   string
	server string
	drafts bool
	exists bool
	uv     uint32
	perm   []string // nil: PERMANENTFLAGS not sent

	ma      *account.Appender
	arena   []byte // the bytes of the batch being filled
	batch   []account.AppendMsg
	pending []pendingMsg
	bytes   int64
	window  chan inflight
	wg      sync.WaitGroup
	stopped chan struct{}
	// go-imap APPENDs (no MULTIAPPEND)
	apWin chan apInflight
	// Gmail: labels set after each APPEND, on a connection of its own
	gm    *account.GmailConn
	gmMu  sync.Mutex
	gmCap error
	// Bridge: the messages appended with Proton labels, by label; COPY
	// into Labels/<label> labels them (see copyLabels)
	labelMu     sync.Mutex
	labelCopies map[string][]uint32
}

type pendingMsg struct {
	done engine.PutFunc
}

type inflight struct {
	res  *account.BatchResult
	msgs []pendingMsg
}

type apInflight struct {
	ap   *imapclient.AppendCommand
	done engine.PutFunc
}

func (w *imapWriter) Exists() bool        { return w.exists }
func (w *imapWriter) UIDValidity() uint32 { return w.uv }

func (w *imapWriter) Close(err error) {
	if w.ma != nil && err != nil {
		w.ma.Abort() // what is in flight is not completed
	}
	if w.window != nil {
		close(w.window)
		<-w.stopped
		w.window = nil
	}
	if w.apWin != nil {
		close(w.apWin)
		<-w.stopped
		w.apWin = nil
	}
	if w.ma != nil && err == nil {
		w.ma.Close()
	}
	if w.gm != nil {
		w.gm.Close()
		w.gm = nil
	}
	if w.arena != nil {
		w.s.mu.Lock()
		w.s.arenas = append(w.s.arenas, w.arena[:0])
		w.s.mu.Unlock()
		w.arena = nil
	}
	w.s.release(w.c, err)
}

// Unstorable returns the keywords of flags the folder cannot keep
// (PERMANENTFLAGS without \* and without them).
func (w *imapWriter) Unstorable(flags []string) []string {
	if w.perm == nil {
		return nil
	}
	ok := AllowedFlags(flags, w.perm)
	kept := map[string]bool{}
	for _, f := range ok {
		kept[strings.ToLower(f)] = true
	}
	var out []string
	for _, f := range flags {
		if !kept[strings.ToLower(f)] && !strings.EqualFold(f, `\Recent`) {
			out = append(out, f)
		}
	}
	return out
}

func (w *imapWriter) allowed(flags []string) []imap.Flag {
	var out []imap.Flag
	for _, f := range AllowedFlags(flags, w.perm) {
		out = append(out, imap.Flag(f))
	}
	return out
}

// Inventory lists the folder's messages by key: one FETCH of RFC822.SIZE
// and the engine.Message-ID field, and the header's SHA-256 for messages without
// engine.Message-ID.
func (w *imapWriter) Inventory(ctx context.Context) (map[string][]engine.Held, error) {
	out := map[string][]engine.Held{}
	if !w.exists {
		return out, nil
	}
	// a fresh view of the folder (what was appended on other connections)
	sel, err := w.c.Select(w.server, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("SELECT %q: %w", w.server, err)
	}
	if sel.NumMessages == 0 {
		return out, nil // an empty folder: nothing to ask
	}
	var all imap.UIDSet
	all.AddRange(1, 0)
	sec := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-Id"}}
	fc := w.c.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{sec}})
	sizes := map[uint32]int64{}
	var noID []uint32
	for m := fc.Next(); m != nil; m = fc.Next() {
		buf, err := m.Collect()
		if err != nil {
			fc.Close()
			return nil, fmt.Errorf("listing what %q holds: %w", w.server, err)
		}
		if buf.UID == 0 {
			continue
		}
		var hdr []byte
		for _, bs := range buf.BodySection {
			hdr = bs.Bytes
		}
		id, _ := account.HeaderIDs(hdr)
		u := uint32(buf.UID)
		if id == "" {
			noID = append(noID, u)
			sizes[u] = buf.RFC822Size
			continue
		}
		k := w.s.Key(&engine.Message{MessageID: id, Size: buf.RFC822Size})
		out[k] = append(out[k], engine.Held{UID: u})
	}
	if err := fc.Close(); err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) {
			return nil, fmt.Errorf("listing what %q holds: %w", w.server, err)
		}
		// gluon answers NO to a FETCH in an empty folder
	}
	if len(noID) > 0 {
		hashes, err := w.c.HeaderHashes(noID)
		if err != nil {
			return nil, err
		}
		for _, u := range noID {
			k := engine.KeyOf(&engine.Message{HeaderHash: hashes[u], Size: sizes[u]})
			out[k] = append(out[k], engine.Held{UID: u})
		}
	}
	return out, nil
}

var _ engine.ContentHasher = (*imapWriter)(nil)

// Hashes returns the SHA-256 of the bytes of held messages (BODY.PEEK[],
// streamed). Proton Mail Bridge rebuilds the messages it takes, and Gmail
// may add to them: there ok is false.
func (w *imapWriter) Hashes(ctx context.Context, uids []uint32) (map[uint32]string, bool, error) {
	if w.s.bridge || w.s.gmail {
		return nil, false, nil
	}
	if len(uids) == 0 || !w.exists {
		return map[uint32]string{}, true, nil
	}
	sort.Slice(uids, func(a, b int) bool { return uids[a] < uids[b] })
	out, err := w.c.BodyHashes(uids)
	if err != nil {
		return nil, true, fmt.Errorf("reading messages of %q to compare them: %w", w.server, err)
	}
	return out, true, nil
}

// Settle waits until the folder's message count has not moved for two
// seconds (at most 30 s), as import does after an interrupted run.
func (w *imapWriter) Settle(ctx context.Context) {
	w.c.WaitSettled(ctx, w.server)
}

// Store adds and removes flags.
func (w *imapWriter) Store(uids []uint32, add, remove []string) error {
	if len(uids) == 0 {
		return nil
	}
	set := account.UIDSet(uids)
	if a := w.allowed(add); len(a) > 0 {
		if err := w.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: a}, nil).Close(); err != nil {
			return fmt.Errorf("STORE +FLAGS in %q: %w", w.server, err)
		}
	}
	var rm []imap.Flag
	for _, f := range remove {
		if sinkValidFlag(f) {
			rm = append(rm, imap.Flag(f))
		}
	}
	if len(rm) > 0 {
		if err := w.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: rm}, nil).Close(); err != nil {
			return fmt.Errorf("STORE -FLAGS in %q: %w", w.server, err)
		}
	}
	return nil
}

func sinkValidFlag(f string) bool {
	return ValidKeyword(strings.TrimPrefix(f, `\`))
}

// Delete flags the messages \Deleted and expunges them (UID EXPUNGE where
// the server has UIDPLUS, so that nothing else goes).
func (w *imapWriter) Delete(uids []uint32) error {
	set := account.UIDSet(uids)
	if err := w.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		return fmt.Errorf("STORE +FLAGS \\Deleted in %q: %w", w.server, err)
	}
	if !w.c.Caps().Has(imap.CapUIDPlus) {
		return fmt.Errorf("the target has no UIDPLUS: the messages to delete in %q are flagged \\Deleted, not expunged", w.server)
	}
	if err := w.c.UIDExpunge(set).Close(); err != nil {
		return fmt.Errorf("UID EXPUNGE in %q: %w", w.server, err)
	}
	return nil
}

// Put appends a message, streaming it.
func (w *imapWriter) Put(ctx context.Context, m *engine.Message, body io.Reader, done engine.PutFunc) error {
	size := m.Size
	if w.s.limit > 0 && size > w.s.limit {
		io.Copy(io.Discard, body)
		done(0, 0, &engine.RefusedError{Reason: fmt.Sprintf("%d bytes is over the target's APPENDLIMIT of %d bytes; not sent", size, w.s.limit)})
		return nil
	}
	if err := w.s.Budget.Take(size); err != nil {
		return &engine.FatalError{Err: err}
	}
	if w.s.gmail {
		if err := w.gmailCapErr(); err != nil {
			return err
		}
		if labels := gmailTargetLabels(m, w.name, w.s.gmailImplied(w.name)); len(labels) > 0 {
			done = w.labelAfter(ctx, m, labels, done)
		}
	}
	if w.s.bridge {
		if ls := bridgeLabels(m.Labels); len(ls) > 0 {
			done = w.labelCopyAfter(ls, done)
		}
		var why string
		body, size, why = w.bridgeCheck(m, body)
		if why != "" {
			io.Copy(io.Discard, body)
			done(0, 0, &engine.RefusedError{Reason: why})
			return nil
		}
	}
	if !w.s.bridge && !w.s.noMA && w.ma == nil {
		ma, err := w.s.Account.DialAppender(ctx)
		switch {
		case err == nil:
			w.s.conns.add(ma, func() { ma.Abort() })
			w.ma = ma
			w.window = make(chan inflight, sinkInFlight)
			w.stopped = make(chan struct{})
			go w.collect()
		case errors.Is(err, account.ErrNoMultiAppend):
			w.s.mu.Lock()
			w.s.noMA = true
			w.s.mu.Unlock()
		default:
			return err
		}
	}
	if w.ma == nil {
		return w.putOne(m, body, size, done)
	}
	msg := account.AppendMsg{Size: size, Flags: w.allowed(m.Flags), Date: m.InternalDate}
	if size > sinkStreamThreshold {
		// straight from the FETCH literal into an APPEND literal
		if err := w.sendBatch(); err != nil {
			return err
		}
		msg.Open = func() (io.ReadCloser, error) { return io.NopCloser(body), nil }
		res, err := w.ma.AppendBatch(w.server, []account.AppendMsg{msg})
		if err != nil {
			return err
		}
		return w.enqueue(inflight{res, []pendingMsg{{done}}})
	}
	if w.arena == nil {
		w.s.mu.Lock()
		if n := len(w.s.arenas); n > 0 {
			w.arena = w.s.arenas[n-1][:0]
			w.s.arenas = w.s.arenas[:n-1]
		}
		w.s.mu.Unlock()
		if w.arena == nil {
			w.arena = make([]byte, 0, sinkBatchBytes+sinkStreamThreshold)
		}
	}
	at := len(w.arena)
	w.arena = w.arena[:at+int(size)]
	buf := w.arena[at : at+int(size)]
	if _, err := io.ReadFull(body, buf); err != nil {
		w.arena = w.arena[:at]
		return err
	}
	msg.Open = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	w.batch = append(w.batch, msg)
	w.pending = append(w.pending, pendingMsg{done})
	w.bytes += size
	if len(w.batch) >= sinkBatchMessages || w.bytes >= sinkBatchBytes {
		return w.sendBatch()
	}
	return nil
}

func (w *imapWriter) sendBatch() error {
	if len(w.batch) == 0 {
		return nil
	}
	res, err := w.ma.AppendBatch(w.server, w.batch)
	msgs := w.pending
	// the bytes are in the connection's buffer or sent: the arena is free
	w.batch, w.pending, w.bytes, w.arena = nil, nil, 0, w.arena[:0]
	if err != nil {
		return err
	}
	return w.enqueue(inflight{res, msgs})
}

func (w *imapWriter) enqueue(f inflight) error {
	w.wg.Add(1)
	select {
	case w.window <- f:
		return nil
	default:
	}
	// the collector waits on answers to what is still buffered
	if err := w.ma.Flush(); err != nil {
		w.wg.Done()
		return err
	}
	w.window <- f
	return nil
}

// collect takes the server's answers to the batches, in order.
func (w *imapWriter) collect() {
	defer close(w.stopped)
	for f := range w.window {
		w.ma.Wait(f.res)
		err := f.res.Err
		var ie *imap.Error
		for i, p := range f.msgs {
			switch {
			case err == nil:
				var uid uint32
				if len(f.res.UIDs) == len(f.msgs) {
					uid = f.res.UIDs[i]
				}
				p.done(uid, f.res.UIDValidity, nil)
			case w.s.gmail && account.AsCapError(err, "upload", true) != nil:
				p.done(0, 0, &engine.FatalError{Err: account.AsCapError(err, "upload", true)})
			case errors.As(err, &ie) && ie.Code == imap.ResponseCodeOverQuota:
				p.done(0, 0, &engine.FatalError{Err: w.s.overQuota(ie)})
			case errors.As(err, &ie) && len(f.msgs) > 1:
				p.done(0, 0, engine.ErrBatchRefused)
			case errors.As(err, &ie):
				p.done(0, 0, &engine.RefusedError{Reason: ie.Text})
			default:
				p.done(0, 0, err)
			}
		}
		w.wg.Done()
	}
}

// Flush sends what is held and waits for every answer.
func (w *imapWriter) Flush() error {
	if w.ma != nil {
		err := w.sendBatch()
		if ferr := w.ma.Flush(); err == nil {
			err = ferr
		}
		w.wg.Wait()
		if err == nil {
			err = w.gmailCapErr()
		}
		return err
	}
	w.wg.Wait()
	if err := w.gmailCapErr(); err != nil {
		return err
	}
	if ce := w.c.Throttled(); ce != nil {
		return &engine.FatalError{Err: ce}
	}
	return w.copyLabels()
}

// bridgeLabels are the Proton labels that become Labels/<label> on a
// Bridge target (Starred is \Flagged; Proton labels cannot be nested).
func bridgeLabels(labels []string) []string {
	var out []string
	for _, l := range labels {
		if l != "Starred" && l != "" && !strings.Contains(l, "/") {
			out = append(out, l)
		}
	}
	return out
}

// labelCopyAfter wraps done: a message appended with its UID is labelled
// by the next copyLabels.
func (w *imapWriter) labelCopyAfter(labels []string, done engine.PutFunc) engine.PutFunc {
	return func(uid, uv uint32, err error) {
		if err == nil && uid != 0 {
			w.labelMu.Lock()
			if w.labelCopies == nil {
				w.labelCopies = map[string][]uint32{}
			}
			for _, l := range labels {
				w.labelCopies[l] = append(w.labelCopies[l], uid)
			}
			w.labelMu.Unlock()
		}
		done(uid, uv, err)
	}
}

// copyLabels labels the messages appended on a Bridge target: a COPY into
// Labels/<label> labels the same Proton message. The folder is selected
// again first, so that the session sees what was appended. A label that
// cannot be set is reported in Unlabelled.
func (w *imapWriter) copyLabels() error {
	w.labelMu.Lock()
	copies := w.labelCopies
	w.labelCopies = nil
	w.labelMu.Unlock()
	if len(copies) == 0 {
		return nil
	}
	if _, err := w.c.Select(w.server, nil).Wait(); err != nil {
		return fmt.Errorf("SELECT %q: %w", w.server, err)
	}
	labels := make([]string, 0, len(copies))
	for l := range copies {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	for _, l := range labels {
		uids := copies[l]
		dest := "Labels/" + l
		fail := func(format string, a ...any) {
			w.s.mu.Lock()
			w.s.Unlabelled = append(w.s.Unlabelled, engine.Failure{Folder: w.name, Error: dest + ": " + fmt.Sprintf(format, a...)})
			w.s.mu.Unlock()
		}
		if err := w.s.create(w.c, []string{"Labels", l}); err != nil {
			fail("creating the label: %v", err)
			continue
		}
		cd, err := w.c.Copy(account.UIDSet(uids), w.s.serverName([]string{"Labels", l})).Wait()
		if err != nil {
			fail("labelling %d messages: %v", len(uids), err)
			continue
		}
		if cd != nil && cd.SourceUIDs != nil {
			if n, _ := cd.SourceUIDs.Nums(); len(n) != len(uids) {
				fail("labelled %d of %d messages", len(n), len(uids))
			}
		}
	}
	return nil
}

// putOne appends with go-imap (one APPEND per message, pipelined: the next
// goes out while the server works on this one).
func (w *imapWriter) putOne(m *engine.Message, body io.Reader, size int64, done engine.PutFunc) error {
	if w.apWin == nil {
		w.apWin = make(chan apInflight, 32)
		w.stopped = make(chan struct{})
		go func() {
			defer close(w.stopped)
			for f := range w.apWin {
				data, err := f.ap.Wait()
				var ie *imap.Error
				switch {
				case err == nil:
					var uid, uv uint32
					if data != nil {
						uid, uv = uint32(data.UID), data.UIDValidity
					}
					f.done(uid, uv, nil)
				case w.s.gmail && account.AsCapError(err, "upload", true) != nil:
					f.done(0, 0, &engine.FatalError{Err: account.AsCapError(err, "upload", true)})
				case errors.As(err, &ie) && ie.Code == imap.ResponseCodeOverQuota:
					f.done(0, 0, &engine.FatalError{Err: w.s.overQuota(ie)})
				case w.s.gmail && w.c.Bye() != nil && account.AsCapError(w.c.Bye(), "upload", true) != nil:
					f.done(0, 0, &engine.FatalError{Err: account.AsCapError(w.c.Bye(), "upload", true)})
				case errors.As(err, &ie):
					f.done(0, 0, &engine.RefusedError{Reason: ie.Text})
				default:
					f.done(0, 0, err)
				}
				w.wg.Done()
			}
		}()
	}
	opts := &imap.AppendOptions{Flags: w.allowed(m.Flags)}
	if !m.InternalDate.IsZero() {
		opts.Time = m.InternalDate
	}
	ap := w.c.Append(w.server, size, opts)
	n, err := io.Copy(ap, io.LimitReader(body, size))
	if err == nil && n != size {
		err = fmt.Errorf("the message gave %d bytes, not %d", n, size)
	}
	if err != nil {
		// a literal cut short: the connection goes, the server never
		// appends it
		w.c.Close()
		ap.Close()
		return err
	}
	if err := ap.Close(); err != nil {
		return err
	}
	w.wg.Add(1)
	w.apWin <- apInflight{ap, done}
	return nil
}

// bridgeCheck applies Bridge's rules as a target to a message whose
// header is read first (at most 1 MiB is held): a From and a Date header
// (except in Drafts), at most 70 MiB, and no X-Pm-Gluon-Id field (Bridge's
// own, from a message that came out of a Bridge). It returns the stream to
// send and its size.
func (w *imapWriter) bridgeCheck(m *engine.Message, body io.Reader) (io.Reader, int64, string) {
	if m.Size > bridgeMaxSize {
		return body, m.Size, fmt.Sprintf("%d MiB is over Proton's import limit of 70 MiB", m.Size>>20)
	}
	br := bufio.NewReaderSize(body, 64<<10)
	var hdr, kept bytes.Buffer
	hasFrom, hasDate, dropping := false, false, false
	for hdr.Len() < 1<<20 {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			hdr.Write(line)
			kept.Write(line)
			continue
		}
		hdr.Write(line)
		t := strings.TrimRight(string(line), "\r\n")
		if t == "" || err != nil {
			kept.Write(line)
			break
		}
		if t[0] == ' ' || t[0] == '\t' {
			if !dropping {
				kept.Write(line)
			}
			continue
		}
		name, _, _ := strings.Cut(t, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		dropping = name == "x-pm-gluon-id"
		hasFrom = hasFrom || name == "from"
		hasDate = hasDate || name == "date"
		if !dropping {
			kept.Write(line)
		}
	}
	rest := io.MultiReader(bytes.NewReader(kept.Bytes()), br)
	size := m.Size - int64(hdr.Len()-kept.Len())
	if !w.drafts && (!hasFrom || !hasDate) {
		return rest, size, "Proton Mail Bridge needs a From and a Date header (except in Drafts)"
	}
	return rest, size, ""
}

// gmailImplied is the label a message gets from the Gmail folder it is
// appended to ("" for All Mail, Spam and Trash, which are not labels).
func (s *IMAPSink) gmailImplied(name string) string {
	if name == "INBOX" {
		return `\Inbox`
	}
	s.mu.Lock()
	f := s.byPath[name]
	s.mu.Unlock()
	if f != nil {
		for _, a := range f.Attrs {
			switch strings.ToLower(string(a)) {
			case `\sent`:
				return `\Sent`
			case `\drafts`:
				return `\Draft`
			case `\important`:
				return `\Important`
			case `\flagged`:
				return `\Starred`
			case `\all`, `\junk`, `\trash`:
				return ""
			}
		}
	}
	return name
}

// gmailTargetLabels are the labels to set on a message appended into
// folder of a Gmail target, from the source's labels (Proton's or
// Gmail's): "Starred" is the \Flagged of the APPEND (or \Starred when the
// message is not flagged), "$Important" is \Important, the label the
// folder gives is left out, the others are set by name.
func gmailTargetLabels(m *engine.Message, folder, implied string) []string {
	flagged := false
	for _, f := range m.Flags {
		flagged = flagged || strings.EqualFold(f, `\Flagged`)
	}
	var out []string
	for _, l := range m.Labels {
		switch {
		case l == "Starred":
			if !flagged {
				out = append(out, `\Starred`)
			}
		case l == "$Important":
			out = append(out, `\Important`)
		case l == folder, l == "", implied != "" && strings.EqualFold(l, implied):
		default:
			out = append(out, l)
		}
	}
	return out
}

// labelAfter wraps done: once the APPEND is answered with its UID
// (APPENDUID), the labels are set (UID STORE +X-GM-LABELS) before the
// copy is recorded. A daily cap met there stops the run after this
// message (recorded: it is at the target); another refusal is reported in
// Unlabelled.
func (w *imapWriter) labelAfter(ctx context.Context, m *engine.Message, labels []string, done engine.PutFunc) engine.PutFunc {
	return func(uid, uv uint32, err error) {
		if err == nil {
			lerr := errors.New("the target did not say the message's UID (no APPENDUID)")
			if uid != 0 {
				lerr = w.addLabels(ctx, uid, labels)
			}
			if lerr != nil {
				if ce := account.AsCapError(lerr, "upload", true); ce != nil {
					w.gmMu.Lock()
					if w.gmCap == nil {
						w.gmCap = &engine.FatalError{Err: ce}
					}
					w.gmMu.Unlock()
				} else {
					w.s.mu.Lock()
					w.s.Unlabelled = append(w.s.Unlabelled, engine.Failure{Folder: m.Folder, UID: m.UID, Error: fmt.Sprintf("stored in %s, but its labels %q could not be set: %v", w.name, labels, lerr)})
					w.s.mu.Unlock()
				}
			}
		}
		done(uid, uv, err)
	}
}

func (w *imapWriter) addLabels(ctx context.Context, uid uint32, labels []string) error {
	w.gmMu.Lock()
	defer w.gmMu.Unlock()
	if w.gm == nil {
		g, err := w.s.Account.DialGmail(ctx)
		if err != nil {
			return err
		}
		w.s.conns.add(g, func() { g.Close() })
		if err := g.Select(w.server); err != nil {
			g.Close()
			return err
		}
		w.gm = g
	}
	err := w.gm.AddLabels(uid, labels)
	var ie *imap.Error
	if err != nil && !errors.As(err, &ie) {
		w.gm.Close() // a broken connection: a new one for the next
		w.gm = nil
	}
	return err
}

// gmailCapErr is the daily cap met while labelling, if any.
func (w *imapWriter) gmailCapErr() error {
	w.gmMu.Lock()
	defer w.gmMu.Unlock()
	return w.gmCap
}
