package imports

import (
	"context"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
)

// Gmail as a target (X-GM-EXT-1): one APPEND into the chosen folder, then
// the message's other labels with one UID STORE +X-GM-LABELS (on a
// connection of its own: go-imap cannot read Gmail's answer), instead of
// one copy per label. Gmail archives as a source: their labels (gm_labels
// in the index) become keywords on other targets, or copies into one folder
// per label with --labels folders.

// gmailArchiveItems applies a Gmail archive's labels to a message read from
// it, for targets other than Gmail: its user labels other than its own
// folder become keywords (\Important becomes $Important), or, with
// labelsAsFolders, one more copy each into the label's folder.
func gmailArchiveItems(it *Item, labelsAsFolders bool) []*Item {
	out := []*Item{it}
	if len(it.Meta.GmailLabels) == 0 {
		return out
	}
	for _, l := range it.Meta.GmailLabels {
		switch {
		case strings.EqualFold(l, `\Important`):
			if !labelsAsFolders {
				it.Meta.Flags = append(it.Meta.Flags, "$Important")
			}
		case strings.HasPrefix(l, `\`), l == it.Meta.Folder:
		case labelsAsFolders:
			x := *it
			x.Meta.Folder, x.Role, x.ID = l, "", it.ID+"#label:"+l
			out = append(out, &x)
		default:
			it.Meta.Flags = append(it.Meta.Flags, keyword(l))
		}
	}
	return out
}

// gmailFlags leaves out of a message's flags the keywords its Gmail labels
// became (gmailArchiveItems): on a Gmail target the labels themselves are
// set, and Gmail would make every keyword one more label.
func gmailFlags(it *Item) []string {
	if len(it.Meta.GmailLabels) == 0 {
		return it.Meta.Flags
	}
	drop := map[string]bool{"$important": true}
	for _, l := range it.Meta.GmailLabels {
		drop[strings.ToLower(keyword(l))] = true
	}
	var out []string
	for _, f := range it.Meta.Flags {
		if !drop[strings.ToLower(f)] {
			out = append(out, f)
		}
	}
	return out
}

// gmailImplied is the label a message gets from the Gmail folder it is
// appended to ("" for All Mail, Spam and Trash, which are not labels).
func (im *importer) gmailImplied(name string) string {
	if name == "INBOX" {
		return `\Inbox`
	}
	im.mu.Lock()
	f := im.byName[name]
	im.mu.Unlock()
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

// gmailLabels are the labels to set on a message appended into folder name
// of a Gmail target: those of a Gmail archive (X-GM-LABELS), or the Proton
// labels of a Proton message, less the one the folder gives and \Starred
// when the message is \Flagged (the APPEND's flag gives it).
func (im *importer) gmailLabels(it *Item, name string) []string {
	var src []string
	switch {
	case len(it.Meta.GmailLabels) > 0:
		src = it.Meta.GmailLabels
	case it.Meta.PMInternalID != "":
		for _, l := range it.Meta.Labels {
			if l != "Starred" {
				src = append(src, l)
			}
		}
	}
	if len(src) == 0 {
		return nil
	}
	implied := im.gmailImplied(name)
	flagged := false
	for _, f := range it.Meta.Flags {
		flagged = flagged || strings.EqualFold(f, `\Flagged`)
	}
	var out []string
	for _, l := range src {
		switch {
		case strings.EqualFold(l, implied), strings.EqualFold(l, `\Spam`), strings.EqualFold(l, `\Trash`),
			flagged && strings.EqualFold(l, `\Starred`):
			continue
		}
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// storeGmailLabels sets the labels of the messages just appended into
// server (by UID, from APPENDUID): one UID STORE +X-GM-LABELS each, on a
// connection of its own. A label that cannot be set is reported.
func (im *importer) storeGmailLabels(ctx context.Context, server string, t *target, labels map[imap.UID][]string) error {
	if len(labels) == 0 {
		return nil
	}
	g, err := im.o.Account.DialGmail(ctx)
	if err != nil {
		return err
	}
	im.conns.add(func() { g.Close() })
	defer g.Close()
	if err := g.Select(server); err != nil {
		im.failf(t.name, server, "labelling %d messages: %v", len(labels), err)
		return nil
	}
	uids := make([]imap.UID, 0, len(labels))
	for u := range labels {
		uids = append(uids, u)
	}
	sort.Slice(uids, func(i, k int) bool { return uids[i] < uids[k] })
	for _, u := range uids {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := g.AddLabels(uint32(u), labels[u]); err != nil {
			if ce := account.AsCapError(err, "upload", true); ce != nil {
				return ce
			}
			im.failf(t.name, server, "labelling UID %d with %q: %v", u, labels[u], err)
		}
	}
	return nil
}
