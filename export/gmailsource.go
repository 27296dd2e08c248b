package export

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
)

// A Gmail source (X-GM-EXT-1, unless engine.LabelsFolders) follows export's
// model: one metadata pass (ScanGmail) over All Mail, Spam and
// Trash gives every message once, keyed by X-GM-MSGID, with the one folder
// export's rule chooses for it (INBOX > Sent > Drafts > Spam > Trash > its
// first user label in sorted order > All Mail). The source's folders are
// those folders, each read from the mailbox its messages were found in
// (All Mail, Spam or Trash), by UID. A message copied by an earlier run
// stays in the folder it was copied into (engine.Placer): a label added later
// does not copy it again, its labels and flags are brought to that copy.
// Its labels are given as Labels: \Starred as "Starred" (\Flagged),
// \Important as "$Important", user labels by name (the one that is its
// folder left out), Gmail's other system labels (\Inbox, \Sent, \Draft)
// left out, as the folder says them.

// groupFolder is the engine's folder of a new group: the messages of
// mailbox src (UIDVALIDITY uv) that go into the folder name (target, nil
// when it is not listed).
func groupFolder(name string, src *account.Folder, uv uint32, target *account.Folder) *engine.Folder {
	return &engine.Folder{Name: name, UIDValidity: uv, Role: roleOf(target),
		Handle: &gmailGroup{src: src, uv: uv, byUID: map[uint32]*GmailMessage{}, target: target}}
}

// gmailGroup is one source folder of a Gmail source: the messages found in
// one mailbox that go into one folder.
type gmailGroup struct {
	src    *account.Folder
	uv     uint32
	uids   []uint32
	byUID  map[uint32]*GmailMessage
	target *account.Folder // the folder they go into (nil: not listed)
}

var _ engine.Placer = (*IMAPSource)(nil)

// Place is told where earlier runs put Gmail messages.
func (s *IMAPSource) Place(placed func(string) string) { s.placed = placed }

// Holds reports whether the Gmail source holds the message (after Folders).
func (s *IMAPSource) Holds(id string) bool { return s.gmHeld[id] }

// Placing reports whether the source was read with Gmail's model (it
// places each message itself).
func (s *IMAPSource) Placing() bool { return s.gmail }

// gmailLabels are a Gmail message's labels as the copy takes them.
func gmailLabels(labels []string, folder string) []string {
	var out []string
	for _, l := range labels {
		switch {
		case strings.EqualFold(l, `\Starred`):
			out = append(out, "Starred")
		case strings.EqualFold(l, `\Important`):
			out = append(out, "$Important")
		case strings.HasPrefix(l, `\`), l == folder:
		default:
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func (s *IMAPSource) gmailFolders(ctx context.Context, list []*account.Folder) ([]*engine.Folder, error) {
	msgs, err := ScanGmail(ctx, s.Account, list, s.Log)
	if err != nil {
		return nil, err
	}
	byPath := map[string]*account.Folder{}
	for _, f := range list {
		byPath[f.Path()] = f
	}
	s.gmLabels, s.gmHeld = map[string][]string{}, map[string]bool{}
	type gk struct{ src, name string }
	groups := map[gk]*engine.Folder{}
	var out []*engine.Folder
	excluded := 0
	for i := range msgs {
		m := &msgs[i]
		id := strconv.FormatUint(m.MsgID, 10)
		s.gmHeld[id] = true
		folder, name := m.Folder, m.Folder.Path()
		if s.placed != nil {
			if p := s.placed(id); p != "" && p != name {
				name, folder = p, byPath[p]
			}
		}
		if !Selected(name, s.Include, s.Exclude) {
			excluded++
			continue
		}
		if s.GmailRecorded {
			s.gmLabels["gm:"+id] = append([]string{}, m.Labels...)
		} else {
			s.gmLabels["gm:"+id] = gmailLabels(m.Labels, name)
		}
		k := gk{m.Source.Name, name}
		f := groups[k]
		if f == nil {
			f = groupFolder(name, m.Source, m.UIDValidity, folder)
			groups[k] = f
			out = append(out, f)
		}
		g := f.Handle.(*gmailGroup)
		g.uids = append(g.uids, m.UID)
		g.byUID[m.UID] = m
		f.Messages++
		f.Bytes += m.Size
	}
	if len(s.GmailMirror) > 0 {
		// an empty group where no message is left: the engine compares it
		// with what the folder holds of that mailbox (Delete)
		uvs := map[string]uint32{}
		for i := range msgs {
			uvs[msgs[i].Source.Name] = msgs[i].UIDValidity
		}
		r := gmailRolesOf(list)
		for _, src := range []*account.Folder{r.all, r.junk, r.trash} {
			if src == nil {
				continue
			}
			uv, ok := uvs[src.Name]
			if !ok && src.Status != nil {
				uv, ok = src.Status.UIDValidity, src.Status.UIDValidity != 0
			}
			if !ok {
				continue // not examined: nothing can be found gone from it
			}
			for _, name := range s.GmailMirror {
				k := gk{src.Name, name}
				if groups[k] != nil || !Selected(name, s.Include, s.Exclude) {
					continue
				}
				f := groupFolder(name, src, uv, byPath[name])
				groups[k] = f
				out = append(out, f)
			}
		}
	}
	s.mu.Lock()
	s.excluded = map[string]int{"": excluded}
	s.mu.Unlock()
	sort.SliceStable(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

func (s *IMAPSource) openGmail(ctx context.Context, f *engine.Folder, g *gmailGroup) (engine.FolderReader, error) {
	return &gmailReader{imapReader: imapReader{s: s, f: f, af: g.src}, g: g}, nil
}

// gmailReader reads one folder of a Gmail source: the messages of the
// metadata pass, from their mailbox, by UID. The mailbox is examined (on a
// connection of the pool) only when something is to be fetched: a folder
// whose messages are all copied costs nothing after the metadata pass.
type gmailReader struct {
	imapReader
	g *gmailGroup
}

// open takes a connection and examines the group's mailbox, once.
func (r *gmailReader) open(ctx context.Context) error {
	if r.c != nil {
		return nil
	}
	c, err := r.s.conn(ctx)
	if err != nil {
		if ce := account.AsCapError(err, "download", true); ce != nil {
			return &engine.FatalError{Err: ce}
		}
		return err
	}
	sel, err := c.Examine(r.g.src.Name)
	if err != nil {
		r.s.release(c, err)
		if account.IsIMAPError(err) {
			return engine.FolderError(fmt.Errorf("the source refused to open %q: %w", r.g.src.Name, err))
		}
		return err
	}
	if sel.UIDValidity != r.g.uv {
		r.s.release(c, nil)
		return engine.FolderError(fmt.Errorf("%s was renumbered during the run (UIDVALIDITY %d, was %d): run again", r.g.src.Name, sel.UIDValidity, r.g.uv))
	}
	r.c, r.sel = c, sel
	return nil
}

func (r *gmailReader) Close(err error) {
	if r.c != nil {
		r.s.release(r.c, err)
	}
}

func (r *gmailReader) State() (uint32, uint64) { return r.g.uv, 0 }

func (r *gmailReader) UIDs(ctx context.Context, sel engine.Select) ([]uint32, error) {
	var out []uint32
	for _, u := range r.g.uids {
		d := r.g.byUID[u].InternalDate
		if (!sel.Since.IsZero() && d.Before(sel.Since)) || (!sel.Before.IsZero() && !d.Before(sel.Before)) {
			continue
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, k int) bool { return out[i] < out[k] })
	return out, nil
}

func (r *gmailReader) Flags(ctx context.Context, changedSince uint64) (map[uint32][]string, error) {
	out := map[uint32][]string{}
	for u, m := range r.g.byUID {
		out[u] = append([]string{}, m.Flags...)
	}
	return out, nil
}

func (r *gmailReader) Meta(ctx context.Context, uids []uint32) (map[uint32]*engine.Message, error) {
	if r.s.GmailRecorded {
		// what the metadata pass found is what the sink records
		out := map[uint32]*engine.Message{}
		for _, u := range uids {
			gm := r.g.byUID[u]
			if gm == nil {
				continue
			}
			out[u] = &engine.Message{Folder: r.f.Name, UIDValidity: r.g.uv, UID: u, Size: gm.Size, InternalDate: gm.InternalDate,
				Flags: append([]string{}, gm.Flags...), GmailID: strconv.FormatUint(gm.MsgID, 10), GmailThreadID: strconv.FormatUint(gm.ThrID, 10)}
		}
		return out, nil
	}
	if len(uids) == 0 {
		return map[uint32]*engine.Message{}, nil
	}
	if err := r.open(ctx); err != nil {
		return nil, err
	}
	out, err := r.imapReader.Meta(ctx, uids)
	if err != nil {
		if ce := account.AsCapError(err, "download", true); ce != nil {
			return nil, &engine.FatalError{Err: ce}
		}
		return nil, err
	}
	for u, m := range out {
		if gm := r.g.byUID[u]; gm != nil {
			m.GmailID = strconv.FormatUint(gm.MsgID, 10)
			m.GmailThreadID = strconv.FormatUint(gm.ThrID, 10)
		}
	}
	return out, nil
}

// Fetch streams the bodies, ChunkSize at a time, each taken from the daily
// budget first (--max-bytes-per-day); a daily cap stops the run (a
// *engine.FatalError holding the *account.CapError) after what was served.
func (r *gmailReader) Fetch(ctx context.Context, uids []uint32, fn engine.BodyFunc) (map[uint32]bool, error) {
	done := map[uint32]bool{}
	if len(uids) == 0 {
		return done, nil
	}
	if err := r.open(ctx); err != nil {
		return done, err
	}
	chunk := r.s.ChunkSize
	if chunk <= 0 {
		chunk = 1000
	}
	for len(uids) > 0 {
		part := uids[:min(chunk, len(uids))]
		uids = uids[len(part):]
		var capErr error
		for i, u := range part {
			size := int64(0)
			if m := r.g.byUID[u]; m != nil {
				size = m.Size
			}
			if err := r.s.Budget.Take(size); err != nil {
				part, capErr, uids = part[:i], err, nil
				break
			}
		}
		got, err := r.imapReader.Fetch(ctx, part, fn)
		for u := range got {
			done[u] = true
		}
		if err == nil {
			err = capErr
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return done, r.capped(err)
		}
	}
	if ce := r.c.Throttled(); ce != nil {
		return done, &engine.FatalError{Err: ce}
	}
	return done, nil
}

// capped makes a daily cap (the server's, met on the command or in its
// BYE, or the budget's) a *engine.FatalError: the run stops.
func (r *gmailReader) capped(err error) error {
	if ce := account.AsCapError(err, "download", true); ce != nil {
		return &engine.FatalError{Err: ce}
	}
	if r.c.Bye() != nil {
		if ce := account.AsCapError(r.c.Bye(), "download", true); ce != nil {
			return &engine.FatalError{Err: ce}
		}
	}
	return err
}

// Describe examines the group's mailbox and fetches the Subject and Date
// header fields of uids.
func (r *gmailReader) Describe(ctx context.Context, uids []uint32) (map[uint32]engine.Description, error) {
	if len(uids) == 0 {
		return map[uint32]engine.Description{}, nil
	}
	if err := r.open(ctx); err != nil {
		return nil, err
	}
	return r.imapReader.Describe(ctx, uids)
}
