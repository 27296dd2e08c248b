package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
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
	at := map[string]int{}
	for _, m := range msgs {
		name := m.target.Path()
		if !Selected(name, include, exclude) {
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

// gmailScanRetry runs the metadata pass on a connection of its own, again
// on a new one when the connection drops (up to 6 times, with backoff).
func gmailScanRetry(ctx context.Context, cfg *account.Config, roles *gmailRoles, log func(string, ...any)) ([]gmailMsg, error) {
	backoff := firstBackoff
	for attempt := 0; ; attempt++ {
		g, err := cfg.DialGmail(ctx)
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
		log("reading Gmail's labels: %v; trying again in %v", err, backoff)
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
	msgs, err := gmailScanRetry(ctx, cfg, gmailRolesOf(folders), log)
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
