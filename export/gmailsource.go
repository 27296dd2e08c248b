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

// gmailGroup is one source folder of a Gmail source: the messages found in
// one mailbox that go into one folder.
type gmailGroup struct {
	src   *account.Folder
	uv    uint32
	uids  []uint32
	byUID map[uint32]*GmailMessage
}

var _ engine.Placer = (*IMAPSource)(nil)

// Place is told where earlier runs put Gmail messages.
func (s *IMAPSource) Place(placed func(string) string) { s.placed = placed }

// Holds reports whether the Gmail source holds the message (after Folders).
func (s *IMAPSource) Holds(id string) bool { return s.gmHeld[id] }

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
			continue
		}
		s.gmLabels["gm:"+id] = gmailLabels(m.Labels, name)
		k := gk{m.Source.Name, name}
		f := groups[k]
		if f == nil {
			f = &engine.Folder{Name: name, UIDValidity: m.UIDValidity, Handle: &gmailGroup{src: m.Source, uv: m.UIDValidity, byUID: map[uint32]*GmailMessage{}}}
			if folder != nil {
				for _, a := range roles {
					if folder.Has(a) {
						f.Role = string(a)
					}
				}
			}
			groups[k] = f
			out = append(out, f)
		}
		g := f.Handle.(*gmailGroup)
		g.uids = append(g.uids, m.UID)
		g.byUID[m.UID] = m
		f.Messages++
		f.Bytes += m.Size
	}
	sort.SliceStable(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

func (s *IMAPSource) openGmail(c *account.Conn, f *engine.Folder, g *gmailGroup) (engine.FolderReader, error) {
	sel, err := c.Examine(g.src.Name)
	if err != nil {
		s.release(c, err)
		if account.IsIMAPError(err) {
			return nil, engine.FolderError(fmt.Errorf("the source refused to open %q: %w", g.src.Name, err))
		}
		return nil, err
	}
	if sel.UIDValidity != g.uv {
		s.release(c, nil)
		return nil, engine.FolderError(fmt.Errorf("%s was renumbered during the run (UIDVALIDITY %d, was %d): run again", g.src.Name, sel.UIDValidity, g.uv))
	}
	return &gmailReader{imapReader: imapReader{s: s, c: c, f: f, af: g.src, sel: sel}, g: g}, nil
}

// gmailReader reads one folder of a Gmail source: the messages of the
// metadata pass, from their mailbox, by UID.
type gmailReader struct {
	imapReader
	g *gmailGroup
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
		}
	}
	return out, nil
}

// Fetch streams the bodies, each taken from the daily budget first
// (--max-bytes-per-day); a daily cap stops the run (a *engine.FatalError holding
// the *account.CapError) after what was served.
func (r *gmailReader) Fetch(ctx context.Context, uids []uint32, fn engine.BodyFunc) (map[uint32]bool, error) {
	var capErr error
	for i, u := range uids {
		size := int64(0)
		if m := r.g.byUID[u]; m != nil {
			size = m.Size
		}
		if err := r.s.Budget.Take(size); err != nil {
			uids, capErr = uids[:i], err
			break
		}
	}
	done, err := r.imapReader.Fetch(ctx, uids, fn)
	if err == nil {
		err = capErr
	}
	if ce := account.AsCapError(err, "download", true); ce != nil {
		return done, &engine.FatalError{Err: ce}
	}
	if err == nil {
		if ce := r.c.Throttled(); ce != nil {
			return done, &engine.FatalError{Err: ce}
		}
	}
	if err != nil && r.c.Bye() != nil {
		if ce := account.AsCapError(r.c.Bye(), "download", true); ce != nil {
			return done, &engine.FatalError{Err: ce}
		}
	}
	return done, err
}
