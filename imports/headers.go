package imports

import (
	"encoding/csv"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"
)

// header is what an import reads from a message's header.
type header struct {
	messageID   string
	date        time.Time
	hasFrom     bool
	hasDate     bool
	hasReceived bool
	status      string // Status:
	xstatus     string // X-Status:
	keywords    []string
	mozilla     int64 // X-Mozilla-Status, -1 if absent
	mozilla2    int64 // X-Mozilla-Status2, -1 if absent
	gmailLabels []string
	imapStore   bool // X-UID or X-IMAPbase: an IMAP server's mbox store (Dovecot, UW-IMAP)
}

// parseHeader reads the fields an import needs; it never fails: what cannot
// be read is left out.
func parseHeader(b []byte) *header {
	h := &header{mozilla: -1, mozilla2: -1}
	lines := strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n")
	var fields [][2]string
	for _, l := range lines {
		if l == "" {
			break
		}
		if (l[0] == ' ' || l[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1][1] += " " + strings.TrimSpace(l)
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		fields = append(fields, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	for _, f := range fields {
		v := strings.TrimSpace(f[1]) // a folded field starts on its next line
		switch strings.ToLower(f[0]) {
		case "message-id":
			if h.messageID == "" {
				h.messageID = messageID(v)
			}
		case "date":
			h.hasDate = v != ""
			if t, err := mail.ParseDate(v); err == nil {
				h.date = t
			}
		case "from":
			h.hasFrom = v != ""
		case "received":
			h.hasReceived = true
		case "status":
			h.status = v
		case "x-status":
			h.xstatus = v
		case "x-keywords":
			for _, k := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
				h.keywords = append(h.keywords, k)
			}
		case "x-mozilla-status":
			if n, err := strconv.ParseInt(v, 16, 64); err == nil {
				h.mozilla = n
			}
		case "x-mozilla-status2":
			if n, err := strconv.ParseInt(v, 16, 64); err == nil {
				h.mozilla2 = n
			}
		case "x-mozilla-keys":
			// Thunderbird's keywords ($label1, Todo, ...), space-separated,
			// padded with spaces so that it can rewrite them in place
			h.keywords = append(h.keywords, strings.Fields(v)...)
		case "x-uid", "x-imapbase", "x-imap":
			h.imapStore = true
		case "x-gmail-labels":
			h.gmailLabels = parseGmailLabels(v)
		}
	}
	return h
}

// messageID reads a Message-ID field's value: the first <id>, else the
// value as it is.
func messageID(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">"))
}

// flags maps mbox-convention headers to IMAP flags: Status (R read),
// X-Status (A answered, F flagged, T draft, D deleted), X-Keywords, and
// Thunderbird's X-Mozilla-Status and X-Mozilla-Status2 bits and X-Mozilla-Keys.
func (h *header) flags() []string {
	set := map[string]bool{}
	if strings.Contains(h.status, "R") {
		set[`\Seen`] = true
	}
	for _, c := range h.xstatus {
		switch c {
		case 'A':
			set[`\Answered`] = true
		case 'F':
			set[`\Flagged`] = true
		case 'T':
			set[`\Draft`] = true
		case 'D':
			set[`\Deleted`] = true
		}
	}
	if h.mozilla >= 0 {
		if h.mozilla&0x1 != 0 {
			set[`\Seen`] = true
		}
		if h.mozilla&0x2 != 0 {
			set[`\Answered`] = true
		}
		if h.mozilla&0x4 != 0 {
			set[`\Flagged`] = true
		}
		if h.mozilla&0x8 != 0 {
			set[`\Deleted`] = true
		}
		if h.mozilla&0x1000 != 0 {
			set[`$Forwarded`] = true
		}
	}
	if h.mozilla2 >= 0 && h.mozilla2&0x00200000 != 0 {
		// nsMsgMessageFlags::IMAPDeleted: marked deleted on an IMAP server
		set[`\Deleted`] = true
	}
	for _, k := range h.keywords {
		set[k] = true
	}
	out := []string{}
	for f := range set {
		out = append(out, f)
	}
	return out
}

// parseGmailLabels reads X-Gmail-Labels: comma separated, CSV-quoted when a
// label holds a comma, RFC 2047 encoded words decoded.
func parseGmailLabels(v string) []string {
	r := csv.NewReader(strings.NewReader(v))
	r.LazyQuotes = true
	r.TrimLeadingSpace = true
	rec, err := r.Read()
	if err != nil {
		rec = strings.Split(v, ",")
	}
	dec := new(mime.WordDecoder)
	var out []string
	for _, l := range rec {
		l = strings.TrimSpace(l)
		if d, err := dec.DecodeHeader(l); err == nil {
			l = d
		}
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// takeoutItems turns a Gmail Takeout message into the items to import: one
// into its first folder label (Inbox, Sent, Drafts, Spam, Trash, then user
// labels in order; Archive when it has none), and, with labelsAsFolders,
// one more per other user label. Opened/Unread, Starred and Important map
// to flags; Chat messages are skipped.
func takeoutItems(it *Item, h *header, labelsAsFolders bool) []*Item {
	flags := map[string]bool{}
	for _, f := range it.Meta.Flags {
		flags[f] = true
	}
	var folders, userLabels []string
	role := map[string]string{}
	unread, opened := false, false
	for _, l := range h.gmailLabels {
		switch strings.ToLower(l) {
		case "chat":
			return nil
		case "inbox":
			folders = append(folders, "INBOX")
		case "sent":
			folders = append(folders, "Sent")
			role["Sent"] = `\Sent`
		case "draft", "drafts":
			folders = append(folders, "Drafts")
			role["Drafts"] = `\Drafts`
			flags[`\Draft`] = true
		case "spam":
			folders = append(folders, "Spam")
			role["Spam"] = `\Junk`
		case "trash":
			folders = append(folders, "Trash")
			role["Trash"] = `\Trash`
		case "starred":
			flags[`\Flagged`] = true
		case "important":
			flags[`$Important`] = true
		case "unread":
			unread = true
		case "opened":
			opened = true
		case "archived":
		default:
			if strings.HasPrefix(strings.ToLower(l), "category ") || strings.HasPrefix(l, "IMAP_") {
				continue
			}
			userLabels = append(userLabels, l)
		}
	}
	if opened || !unread {
		flags[`\Seen`] = true
	}
	if unread {
		delete(flags, `\Seen`)
	}
	var fl []string
	for f := range flags {
		fl = append(fl, f)
	}
	mk := func(folder, r string, n int) *Item {
		x := *it
		x.Meta.Folder = folder
		x.Meta.Flags = fl
		x.Meta.Labels = append([]string{}, h.gmailLabels...)
		x.Role = r
		if n > 0 {
			x.ID = it.ID + "#" + strconv.Itoa(n)
		}
		return &x
	}
	primary := ""
	if len(folders) > 0 {
		primary = folders[0]
	} else if len(userLabels) > 0 {
		primary, userLabels = userLabels[0], userLabels[1:]
	} else {
		primary = "Archive"
		role["Archive"] = `\Archive`
	}
	out := []*Item{mk(primary, role[primary], 0)}
	if labelsAsFolders {
		for i, l := range userLabels {
			out = append(out, mk(l, "", i+1))
		}
	} else {
		// other labels become keywords on the one copy
		for _, l := range userLabels {
			out[0].Meta.Flags = append(out[0].Meta.Flags, keyword(l))
		}
	}
	return out
}

// keyword makes an IMAP keyword (an atom) from a label.
func keyword(l string) string {
	var b strings.Builder
	for _, r := range l {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`(){%*"\]`, r) {
			b.WriteByte('_')
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// roleAttr returns the special-use role named by a LIST attribute.
func roleAttr(a string) string {
	switch strings.ToLower(a) {
	case `\sent`:
		return `\Sent`
	case `\drafts`:
		return `\Drafts`
	case `\trash`:
		return `\Trash`
	case `\junk`:
		return `\Junk`
	case `\archive`:
		return `\Archive`
	case `\all`:
		return `\All`
	case `\flagged`:
		return `\Flagged`
	}
	return ""
}

// roleOfName guesses the role of a source folder from its name, for inputs
// that carry no attributes (mbox trees, Maildir, old archives).
func roleOfName(folder string) string {
	switch strings.ToLower(folder) {
	case "sent", "sent items", "sent messages", "sent mail", "gesendet", "gesendete elemente", "gesendete objekte", "envoyés", "enviados", "inviata", "posta inviata":
		return `\Sent`
	case "drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze":
		return `\Drafts`
	case "trash", "deleted items", "deleted messages", "bin", "papierkorb", "gelöschte elemente", "corbeille", "papelera", "cestino":
		return `\Trash`
	case "junk", "spam", "junk e-mail", "junk email", "bulk mail":
		return `\Junk`
	case "archive", "archives", "archiv":
		return `\Archive`
	}
	return ""
}
