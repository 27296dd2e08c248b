package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/message"
)

// GmailLabelMode says how a Gmail account (X-GM-EXT-1) is exported.
type GmailLabelMode string

const (
	// GmailLabelsMetadata exports each message once, keyed by X-GM-MSGID,
	// into one folder (see GmailTarget), and records all its labels and its
	// thread in the index (the default).
	GmailLabelsMetadata GmailLabelMode = "metadata"
	// GmailLabelsFolders exports every label as a folder, as for any IMAP
	// server: a message with three labels is stored four times (with All
	// Mail).
	GmailLabelsFolders GmailLabelMode = "folders"
)

// gmailRoles are a Gmail account's mailboxes by role, found by special use
// (whatever their localised names).
type gmailRoles struct {
	inbox, all, sent, drafts, junk, trash *account.Folder
	byName                                map[string]*account.Folder
}

func gmailRolesOf(folders []*account.Folder) *gmailRoles {
	r := &gmailRoles{byName: map[string]*account.Folder{}}
	for _, f := range folders {
		if !f.Selectable() {
			continue
		}
		r.byName[f.Name] = f
		switch {
		case f.Name == "INBOX":
			r.inbox = f
		case f.Has(imap.MailboxAttrAll):
			r.all = f
		case f.Has(imap.MailboxAttrSent):
			r.sent = f
		case f.Has(imap.MailboxAttrDrafts):
			r.drafts = f
		case f.Has(imap.MailboxAttrJunk):
			r.junk = f
		case f.Has(imap.MailboxAttrTrash):
			r.trash = f
		}
	}
	return r
}

// gmailMsg is one message found by the metadata pass.
type gmailMsg struct {
	account.GmailMeta
	src         *account.Folder // the mailbox it was found in (All Mail, Spam, Trash)
	uidValidity uint32
	target      *account.Folder // the folder it is stored in
}

// GmailTarget chooses the one folder a Gmail message is exported into: a
// message of Spam or Trash goes there; else INBOX if it is labelled \Inbox,
// else Sent (\Sent), Drafts (\Draft), else its first user label in sorted
// order, else All Mail. Folders are found by special use, whatever their
// names. src is the mailbox the message was found in.
func (r *gmailRoles) target(src *account.Folder, labels []string) *account.Folder {
	if src != nil && (src == r.junk || src == r.trash) {
		return src
	}
	has := map[string]bool{}
	var user []string
	for _, l := range labels {
		if strings.HasPrefix(l, `\`) {
			has[strings.ToLower(l)] = true
		} else {
			user = append(user, l)
		}
	}
	switch {
	case has[`\inbox`] && r.inbox != nil:
		return r.inbox
	case has[`\sent`] && r.sent != nil:
		return r.sent
	case (has[`\draft`] || has[`\drafts`]) && r.drafts != nil:
		return r.drafts
	case has[`\spam`] && r.junk != nil:
		return r.junk
	case has[`\trash`] && r.trash != nil:
		return r.trash
	}
	sort.Strings(user)
	for _, l := range user {
		if f := r.byName[l]; f != nil {
			return f
		}
	}
	if len(user) > 0 {
		// a label the LIST did not show (should not happen): its own folder
		return &account.Folder{Name: user[0], Delim: '/', Segments: account.SplitName(user[0], '/')}
	}
	return r.all
}

// gmailScan is the metadata pass: X-GM-MSGID, X-GM-THRID, X-GM-LABELS,
// flags, date and size of every message of All Mail, Spam and Trash, each
// X-GM-MSGID once, with the folder it goes into.
func gmailScan(g *account.GmailConn, r *gmailRoles) ([]gmailMsg, error) {
	if r.all == nil {
		return nil, errors.New("this Gmail account shows no All Mail mailbox (\\All) over IMAP: enable it in Gmail's settings (Labels, Show in IMAP), or export with --gmail-labels=folders")
	}
	seen := map[uint64]bool{}
	var out []gmailMsg
	for _, src := range []*account.Folder{r.all, r.junk, r.trash} {
		if src == nil {
			continue
		}
		uv, n, err := g.Examine(src.Name)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			continue
		}
		metas, err := g.FetchMeta()
		if err != nil {
			return nil, err
		}
		for _, m := range metas {
			if m.MsgID == 0 || seen[m.MsgID] {
				continue
			}
			seen[m.MsgID] = true
			out = append(out, gmailMsg{GmailMeta: m, src: src, uidValidity: uv, target: r.target(src, m.Labels)})
		}
	}
	return out, nil
}

// GmailPlanned is one folder of a Gmail export: how many messages a first
// export stores in it.
type GmailPlanned struct {
	// Folder is the server's mailbox of the folder (INBOX, the label's
	// mailbox, [Gmail]/Sent Mail, ...).
	Folder *account.Folder
	// Name is the folder's name in the archive.
	Name     string
	Messages int
	Bytes    int64
}

// GmailFolders runs the metadata pass on a Gmail account and counts what an
// export with these options stores, per folder (INBOX first, then by name),
// and the messages left out by include/exclude.
func GmailFolders(ctx context.Context, cfg *account.Config, folders []*account.Folder, include, exclude []string) (out []GmailPlanned, excluded int, err error) {
	g, err := cfg.DialGmail(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer g.Close()
	msgs, err := gmailScan(g, gmailRolesOf(folders))
	if err != nil {
		return nil, 0, err
	}
	e := &exporter{o: Options{Include: include, Exclude: exclude}}
	at := map[string]int{}
	for _, m := range msgs {
		name := m.target.Path()
		if !e.selected(name) {
			excluded++
			continue
		}
		i, ok := at[name]
		if !ok {
			i = len(out)
			at[name] = i
			out = append(out, GmailPlanned{Folder: m.target, Name: name})
		}
		out[i].Messages++
		out[i].Bytes += m.Size
	}
	sortPlanned(out)
	return out, excluded, nil
}

func sortPlanned(out []GmailPlanned) {
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i].Name, out[k].Name
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
}

// runGmail exports a Gmail account the Gmail way (GmailLabelsMetadata):
// one metadata pass on a connection of its own, then the bodies of the
// messages whose X-GM-MSGID the archive does not hold, by UID, each into
// its one folder.
func (e *exporter) runGmail(ctx context.Context, folders []*account.Folder, start time.Time) (*Summary, error) {
	o := e.o
	e.sum.Gmail = true
	roles := gmailRolesOf(folders)
	if same, n := e.gmailUnchanged(roles); same {
		// nothing arrived and nothing moved to Spam or Trash since the
		// last complete run (gmailstate.go): no metadata pass
		e.sum.Folders = n
		if o.Progress != nil {
			o.Progress.Planned(0, 0)
		}
		e.sum.Elapsed = time.Since(start)
		return e.sum, nil
	}
	msgs, err := e.gmailScanRetry(ctx, roles)
	if err != nil {
		if ce := account.AsCapError(err, "download", true); ce != nil {
			return e.sum, ce
		}
		return nil, fmt.Errorf("reading Gmail's labels: %w", err)
	}
	have := map[string]archive.Record{}
	for _, name := range o.Archive.Folders() {
		recs, err := o.Archive.Records(name)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.GmailMsgID != "" && !r.Alias {
				have[r.GmailMsgID] = r
			}
		}
	}
	// --refresh-flags: flags and labels of archived messages, from the
	// metadata pass, by folder
	updates := map[string][]gmailMsg{}
	// what goes where: groups of (source mailbox, target folder)
	type group struct {
		src    *account.Folder
		uv     uint32
		target *account.Folder
		name   string
		msgs   []gmailMsg
	}
	var groups []*group
	byKey := map[string]*group{}
	targets := map[string]*account.Folder{}
	counts := map[string]uint32{}
	var planned int
	var plannedBytes int64
	for _, m := range msgs {
		name := m.target.Path()
		if !e.selected(name) {
			e.sum.Excluded++
			continue
		}
		targets[name] = m.target
		counts[name]++
		if r, ok := have[strconv.FormatUint(m.MsgID, 10)]; ok {
			changed := !sameFlags(r.Flags, m.Flags) || !sameFlags(r.GmailLabels, m.Labels)
			if o.Archive.Encrypted() {
				// the clear index keeps only a keyed hash of flags and labels
				changed = o.Archive.FlagsTag(m.Flags, archive.TagLabels(nil, m.Labels)) != o.Archive.RecordFlagsTag(&r)
			}
			if o.RefreshFlags && changed {
				m.UID, m.uidValidity = r.UID, r.UIDValidity // where the index has it
				updates[r.Folder] = append(updates[r.Folder], m)
			}
			continue
		}
		k := m.src.Name + "\x00" + name
		gr := byKey[k]
		if gr == nil {
			gr = &group{src: m.src, uv: m.uidValidity, target: m.target, name: name}
			byKey[k] = gr
			groups = append(groups, gr)
		}
		gr.msgs = append(gr.msgs, m)
		planned++
		plannedBytes += m.Size
	}
	e.sum.Folders = len(targets)
	e.sum.Examined = len(groups)
	if o.Progress != nil {
		o.Progress.Planned(planned, plannedBytes)
	}
	// One job per archive folder (its groups: normally one source
	// mailbox), biggest first, on up to Connections connections.
	var names []string
	byName := map[string][]*group{}
	size := map[string]int{}
	for _, gr := range groups {
		if byName[gr.name] == nil {
			names = append(names, gr.name)
		}
		byName[gr.name] = append(byName[gr.name], gr)
		size[gr.name] += len(gr.msgs)
	}
	sort.SliceStable(names, func(i, k int) bool {
		if size[names[i]] != size[names[k]] {
			return size[names[i]] > size[names[k]]
		}
		return names[i] < names[k]
	})
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errMu sync.Mutex
	var runErr error
	stop := make(chan struct{})
	setErr := func(err error) {
		errMu.Lock()
		if runErr == nil {
			runErr = err
			close(stop) // no more folders are started
			var ce *account.CapError
			if !errors.As(err, &ce) {
				cancel() // the others stop at once
			}
			// after a daily cap the others finish the body in flight
			// (served is served) and meet the cap themselves
		}
		errMu.Unlock()
	}
	ch := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < min(o.Connections, len(names)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range ch {
				grs := byName[name]
				w, err := o.Archive.OpenFolder(name, grs[0].target.Segments)
				if err != nil {
					if ferr := e.folderFailed(&job{f: grs[0].target, name: name, segs: grs[0].target.Segments}, err); ferr != nil {
						setErr(ferr)
					}
					continue
				}
				for _, gr := range grs {
					if err := e.gmailGroup(gctx, w, gr.src, gr.uv, gr.target, gr.msgs); err != nil {
						setErr(err)
						break
					}
				}
				if err := w.Close(); err != nil {
					setErr(err)
				}
			}
		}()
	}
feed:
	for _, name := range names {
		select {
		case ch <- name:
		case <-stop:
			break feed
		case <-gctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if runErr == nil && ctx.Err() == nil && len(updates) > 0 {
		runErr = e.gmailRefresh(updates)
	}
	if err := o.Budget.Save(); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil && ctx.Err() == nil {
		for name, f := range targets {
			var attrs []string
			for _, a := range f.Attrs {
				switch a {
				case imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren, imap.MailboxAttrHasNoChildren, imap.MailboxAttrMarked, imap.MailboxAttrUnmarked, imap.MailboxAttrNoInferiors:
				default:
					attrs = append(attrs, string(a))
				}
			}
			st := o.Archive.State(name)
			o.Archive.SetStatus(name, f.Segments, attrs, st.UIDValidity, 0, counts[name], 0, nil)
		}
	}
	if err := o.Archive.SaveState(); err != nil && runErr == nil {
		runErr = err
	}
	if err := e.saveGmailState(roles, runErr == nil && ctx.Err() == nil && len(e.sum.Failed) == 0); err != nil && runErr == nil {
		runErr = err
	}
	sort.Slice(e.sum.Failed, func(i, k int) bool {
		a, b := e.sum.Failed[i], e.sum.Failed[k]
		return a.Folder < b.Folder || (a.Folder == b.Folder && a.UID < b.UID)
	})
	e.sum.Elapsed = time.Since(start)
	if runErr == nil {
		runErr = ctx.Err()
	}
	if ce := account.AsCapError(runErr, "download", true); ce != nil {
		runErr = ce // met anywhere (a new connection's login, say)
	}
	return e.sum, runErr
}

// gmailGroup fetches the bodies of msgs (all of mailbox src) into w,
// reconnecting when the connection drops. A daily cap (the server's or
// --max-bytes-per-day) stops it with a *account.CapError after what
// arrived is committed.
func (e *exporter) gmailGroup(ctx context.Context, w *archive.FolderWriter, src *account.Folder, uv uint32, target *account.Folder, msgs []gmailMsg) error {
	name := target.Path()
	byUID := map[uint32]gmailMsg{}
	var todo []uint32
	for _, m := range msgs {
		byUID[m.UID] = m
		todo = append(todo, m.UID)
	}
	sort.Slice(todo, func(i, k int) bool { return todo[i] < todo[k] })
	done := map[uint32]bool{}
	put := func(uid uint32, r io.Reader, size int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		gm, ok := byUID[uid]
		if !ok || done[uid] {
			return nil
		}
		m := &message.Meta{
			Segments:     target.Segments,
			UIDValidity:  uv,
			UID:          uid,
			Flags:        gm.Flags,
			InternalDate: gm.InternalDate,
			GmailMsgID:   strconv.FormatUint(gm.MsgID, 10),
			GmailThrID:   strconv.FormatUint(gm.ThrID, 10),
			GmailLabels:  append([]string{}, gm.Labels...),
		}
		if _, err := w.Put(m, r, nil); err != nil {
			var re *account.ReadError
			if errors.As(err, &re) {
				return err
			}
			return fatal{fmt.Errorf("writing %s UID %d to the archive: %w", name, uid, err)}
		}
		done[uid] = true
		e.sum.add(true, m.Size)
		if e.o.Progress != nil {
			e.o.Progress.Message(name, m.Size)
		}
		if w.NeedCommit() {
			if err := w.CommitBackground(); err != nil {
				return fatal{err}
			}
		}
		return nil
	}
	attempts := 0
	for len(todo) > 0 {
		c, err := e.conn(ctx)
		if err != nil {
			return err
		}
		err = e.gmailFetch(ctx, c, src, uv, todo, byUID, put)
		e.release(c)
		if cerr := w.Commit(); cerr != nil {
			return fmt.Errorf("folder %s: %w", name, cerr)
		}
		var rest []uint32
		for _, u := range todo {
			if !done[u] {
				rest = append(rest, u)
			}
		}
		progressed := len(rest) < len(todo)
		todo = rest
		if err == nil {
			for _, u := range todo {
				e.sum.fail(Failure{Folder: name, UID: u, Error: "the server did not return the message; the next run tries it again"})
			}
			return nil
		}
		if ce := account.AsCapError(err, "download", true); ce != nil {
			return ce
		}
		var fe fatal
		if errors.As(err, &fe) || ctx.Err() != nil {
			return err
		}
		var ie *imap.Error
		if errors.As(err, &ie) && !isThrottle(err) {
			for _, u := range todo {
				e.sum.fail(Failure{Folder: name, UID: u, Error: err.Error()})
			}
			return nil
		}
		if progressed {
			attempts = 0
		}
		attempts++
		if attempts > 6 {
			return fmt.Errorf("folder %s: giving up after %d reconnects: %w", name, attempts-1, err)
		}
		wait := firstBackoff << min(attempts-1, 5)
		if d, ok := account.ThrottleBackoff(err); ok {
			wait = d
		}
		e.o.Log("folder %s: %v; trying again in %v", name, err, wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func isThrottle(err error) bool {
	_, ok := account.ThrottleBackoff(err)
	return ok
}

// gmailFetch fetches the bodies of uids from src on c, in chunks, each
// message taken from the daily budget first.
func (e *exporter) gmailFetch(ctx context.Context, c *account.Conn, src *account.Folder, uv uint32, uids []uint32, byUID map[uint32]gmailMsg, put func(uint32, io.Reader, int64) error) error {
	sel, err := c.Examine(src.Name)
	if err != nil {
		return err
	}
	if sel.UIDValidity != uv {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Text: fmt.Sprintf("%s was renumbered during the run (UIDVALIDITY %d, was %d); the next run looks again", src.Name, sel.UIDValidity, uv)}
	}
	for len(uids) > 0 {
		n := min(len(uids), e.o.ChunkSize)
		chunk := uids[:n]
		uids = uids[n:]
		var capErr error
		for i, u := range chunk {
			if err := e.o.Budget.Take(byUID[u].Size); err != nil {
				chunk, capErr, uids = chunk[:i], err, nil
				break
			}
		}
		if len(chunk) > 0 {
			_, err := c.FetchBodies(chunk, put)
			if err != nil {
				return err
			}
		}
		if capErr != nil {
			return capErr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// gmailRefresh records the new flags and labels of archived messages
// (--refresh-flags), one index line each, in the folder that holds it.
func (e *exporter) gmailRefresh(updates map[string][]gmailMsg) error {
	names := make([]string, 0, len(updates))
	for n := range updates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		st := e.o.Archive.State(name)
		w, err := e.o.Archive.OpenFolder(name, st.Segments)
		if err != nil {
			return fmt.Errorf("folder %s: %w", name, err)
		}
		for _, m := range updates[name] {
			w.UpdateGmail(m.uidValidity, m.UID, append([]string{}, m.Flags...), append([]string{}, m.Labels...))
			e.sum.mu.Lock()
			e.sum.FlagsUpdated++
			e.sum.mu.Unlock()
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("folder %s: %w", name, err)
		}
	}
	return nil
}

// gmailScanRetry runs the metadata pass on a connection of its own, again
// on a new one when the connection drops (up to 6 times, with backoff).
func (e *exporter) gmailScanRetry(ctx context.Context, roles *gmailRoles) ([]gmailMsg, error) {
	backoff := firstBackoff
	for attempt := 0; ; attempt++ {
		g, err := e.o.Account.DialGmail(ctx)
		if err != nil {
			var ce *account.ConnectError
			if errors.As(err, &ce) && ce.Op != "connect" {
				return nil, err // login, TLS: trying again does not help
			}
		} else {
			var msgs []gmailMsg
			msgs, err = gmailScan(g, roles)
			g.Close()
			if err == nil {
				return msgs, nil
			}
		}
		var ie *imap.Error
		var re *account.ReadError
		if ctx.Err() != nil || attempt >= 6 || errors.As(err, &ie) || account.AsCapError(err, "download", true) != nil {
			return nil, err
		}
		if !errors.As(err, &re) && !isNetErr(err) {
			return nil, err
		}
		e.o.Log("reading Gmail's labels: %v; trying again in %v", err, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// isNetErr reports whether err is a network failure (a dropped or refused
// connection, a timeout).
func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// GmailMessage is one message of a Gmail account as the metadata pass
// found it: its X-GM-* data, the mailbox it was found in (All Mail, Spam or
// Trash) with that mailbox's UIDVALIDITY, and the one folder export's rule
// chooses for it (GmailTarget).
type GmailMessage struct {
	account.GmailMeta
	// Source is the mailbox the message was found in, UIDValidity its
	// UIDVALIDITY (UID is the message's UID there).
	Source      *account.Folder
	UIDValidity uint32
	// Folder is the folder the message goes into.
	Folder *account.Folder
}

// ScanGmail runs export's metadata pass on a Gmail account (each
// X-GM-MSGID once, from All Mail, Spam and Trash, on a connection of its
// own, again on a new one when it drops), with the folder each message goes
// into. folders is the account's LIST (with special use). A daily cap is
// returned as a *account.CapError.
func ScanGmail(ctx context.Context, cfg *account.Config, folders []*account.Folder, log func(string, ...any)) ([]GmailMessage, error) {
	if log == nil {
		log = func(string, ...any) {}
	}
	e := &exporter{o: Options{Account: cfg, Log: log}}
	msgs, err := e.gmailScanRetry(ctx, gmailRolesOf(folders))
	if err != nil {
		if ce := account.AsCapError(err, "download", true); ce != nil {
			return nil, ce
		}
		return nil, fmt.Errorf("reading Gmail's labels: %w", err)
	}
	out := make([]GmailMessage, len(msgs))
	for i, m := range msgs {
		out[i] = GmailMessage{GmailMeta: m.GmailMeta, Source: m.src, UIDValidity: m.uidValidity, Folder: m.target}
	}
	return out, nil
}
