package imports

import (
	"strings"
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
