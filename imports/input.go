// Package imports reads mail archives of many kinds (mailmove archives,
// mbox files and trees, folders of .eml files, Maildir, Gmail Takeout) and
// appends their messages to an IMAP account, with folders, flags and dates,
// never twice. It is the write-to-IMAP half of the mailmove pipeline:
// archive -> message -> account.
package imports

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/formats/mbox"
	"github.com/mailmove/mailmove/message"
)

// Item is one message found in the input.
type Item struct {
	// Meta holds the folder ("/"-separated source folder path), flags,
	// date, Message-ID and labels known for the message.
	Meta message.Meta
	// Role is the special use of the source folder ("\\Sent", ...) if known.
	Role string
	// Source says where the message is, for reports: a file, or file and
	// byte offset.
	Source string
	// ID identifies the message in the input for the journal.
	ID string

	open func() (io.ReadCloser, error)
}

// Open returns the raw bytes of the message, as stored in the input.
func (it *Item) Open() (io.ReadCloser, error) { return it.open() }

// Format names an input format.
type Format string

// Input formats.
const (
	FormatAuto     Format = ""
	FormatArchive  Format = "mailmove"
	FormatMbox     Format = "mbox"
	FormatEML      Format = "eml"
	FormatMaildir  Format = "maildir"
	FormatTakeout  Format = "takeout"
	maxHeaderBytes        = 1 << 20
	maxMessageSize        = 1 << 30
)

// InputError is bad input: a file that is not mail, a truncated mbox, ...
type InputError struct {
	File string
	Line int64
	Msg  string
}

func (e *InputError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Scan finds every message in path (a file or a folder) and calls fn for
// each, folder by folder. Bad files are reported through bad and skipped.
func Scan(path string, format Format, labelsAsFolders bool, fn func(*Item) error, bad func(error)) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		switch format {
		case FormatEML:
			return scanEML(path, "INBOX", fn)
		default:
			return scanMbox(path, "INBOX", format == FormatTakeout, labelsAsFolders, fn, bad)
		}
	}
	if _, err := os.Stat(filepath.Join(path, archive.StateDir, "archive.json")); err == nil && (format == FormatAuto || format == FormatArchive) {
		return scanArchive(path, fn)
	}
	if isMaildir(path) && (format == FormatAuto || format == FormatMaildir) {
		return scanMaildirPP(path, fn, bad)
	}
	return scanTree(path, format, labelsAsFolders, fn, bad)
}

// scanArchive reads a mailmove archive through its index.
func scanArchive(root string, fn func(*Item) error) error {
	a, err := archive.OpenReadOnly(root)
	if err != nil {
		return err
	}
	defer a.Close()
	var stored map[string]int64
	for _, folder := range a.Folders() {
		st := a.State(folder)
		role := ""
		for _, at := range st.Attrs {
			if roleAttr(at) != "" {
				role = roleAttr(at)
			}
		}
		recs, err := a.Records(folder)
		if err != nil {
			return err
		}
		// An alias record whose bytes are stored in another folder (archives
		// written before mailmove stored a Proton message in each of its
		// folders: INBOX and Sent) is a message of this folder too: it is
		// read from the stored copy. Aliases of a copy in this folder (after
		// a UIDVALIDITY change) are the same message again.
		here := map[string]bool{}
		for _, r := range recs {
			if !r.Alias && !r.LabelCopy {
				here[fmt.Sprintf("%s@%d", r.File, r.Offset)] = true
			}
		}
		for _, r := range recs {
			if r.LabelCopy {
				continue
			}
			id := fmt.Sprintf("%s@%d", r.File, r.Offset)
			if r.Alias {
				if here[id] {
					continue
				}
				here[id] = true
				if stored == nil {
					if stored, err = storedSizes(a); err != nil {
						return err
					}
				}
				size, ok := stored[id]
				if !ok {
					continue // points to nothing stored: nothing to read
				}
				r.Size = size // the stored copy's bytes are what is read
				id += " in " + folder
			}
			r := r
			it := &Item{Meta: r.Meta, Role: role, Source: r.File, ID: id}
			if a.Header.Format == archive.Mbox {
				it.Source = fmt.Sprintf("%s at byte %d", r.File, r.Offset)
			}
			it.open = func() (io.ReadCloser, error) { return a.OpenMessage(r) }
			if err := fn(it); err != nil {
				return err
			}
		}
	}
	return nil
}

// storedSizes maps "file@offset" of every message stored in an archive
// to its size.
func storedSizes(a *archive.Archive) (map[string]int64, error) {
	out := map[string]int64{}
	for _, folder := range a.Folders() {
		recs, err := a.Records(folder)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if !r.Alias {
				out[fmt.Sprintf("%s@%d", r.File, r.Offset)] = r.Size
			}
		}
	}
	return out, nil
}

// openMboxAt returns the message whose From_ line is at off in an mbox
// file (Content-Length honoured where it fits, for mboxcl2 files).
func openMboxAt(path string, off int64) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	m, err := mbox.NewReader(io.NewSectionReader(f, off, fi.Size()-off)).Next()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s at byte %d: %w", path, off, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{m, f}, nil
}

// scanMbox reads one mbox file whose messages go to folder.
func scanMbox(path, folder string, takeout, labelsAsFolders bool, fn func(*Item) error, bad func(error)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := mbox.NewReader(f)
	var items []*Item
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, mbox.ErrNotMbox) {
			bad(&InputError{File: path, Msg: "not an mbox file (it does not start with a \"From \" line); skipped"})
			return nil
		}
		if err != nil {
			bad(&InputError{File: path, Msg: err.Error()})
			break
		}
		hdr, n, herr := readHeaderAndCount(m)
		if herr != nil {
			bad(&InputError{File: path, Line: m.Line, Msg: herr.Error()})
			if errors.Is(herr, errTooBig) {
				continue
			}
			break
		}
		meta := message.Meta{Folder: folder, InternalDate: m.Date, Size: n}
		h := parseHeader(hdr)
		meta.MessageID = h.messageID
		meta.Flags = h.flags()
		if meta.InternalDate.IsZero() {
			meta.InternalDate = h.date
		}
		off := m.Offset
		it := &Item{Meta: meta, Source: fmt.Sprintf("%s line %d", path, m.Line), ID: fmt.Sprintf("%s@%d", path, off)}
		it.open = func() (io.ReadCloser, error) { return openMboxAt(path, off) }
		if takeout || h.gmailLabels != nil {
			for _, x := range takeoutItems(it, h, labelsAsFolders) {
				items = append(items, x)
			}
			continue
		}
		items = append(items, it)
	}
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

var errTooBig = errors.New("message larger than 1 GiB; skipped")

// readHeaderAndCount reads a message to its end, returning its header (at
// most 1 MiB of it) and its length.
func readHeaderAndCount(r io.Reader) ([]byte, int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr bytes.Buffer
	for hdr.Len() < maxHeaderBytes {
		line, err := br.ReadSlice('\n')
		hdr.Write(line)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	n, err := io.Copy(io.Discard, br)
	if err != nil {
		return nil, 0, err
	}
	total := int64(hdr.Len()) + n
	if total > maxMessageSize {
		return nil, 0, errTooBig
	}
	return hdr.Bytes(), total, nil
}

// scanEML reads one .eml file into folder.
func scanEML(path, folder string, fn func(*Item) error) error {
	meta := message.Meta{Folder: folder}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	hdr, n, err := readHeaderAndCount(f)
	fi, _ := f.Stat()
	f.Close()
	if err != nil {
		return &InputError{File: path, Msg: err.Error()}
	}
	h := parseHeader(hdr)
	meta.Size = n
	meta.MessageID = h.messageID
	meta.Flags = h.flags()
	meta.InternalDate = h.date
	if pm, err := readProtonMetadata(path); err == nil && pm != nil {
		pm.apply(&meta)
	}
	if meta.InternalDate.IsZero() && fi != nil {
		meta.InternalDate = fi.ModTime()
	}
	it := &Item{Meta: meta, Source: path, ID: path, open: func() (io.ReadCloser, error) { return os.Open(path) }}
	return fn(it)
}

// scanTree walks a folder of mbox files, .eml files and Thunderbird
// profile folders; subfolders become folders.
func scanTree(root string, format Format, labelsAsFolders bool, fn func(*Item) error, bad func(error)) error {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			if p != root && isMaildir(p) {
				files = append(files, p)
				return filepath.SkipDir
			}
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, p := range files {
		rel, _ := filepath.Rel(root, p)
		name := filepath.Base(p)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			if err := scanMaildir(p, folderOf(rel), fn, bad); err != nil {
				return err
			}
			continue
		}
		switch {
		case strings.HasSuffix(name, ".msf") || strings.HasSuffix(name, ".metadata.json") || name == "table_of_contents" || strings.HasPrefix(name, "."):
			continue
		case strings.HasSuffix(strings.ToLower(name), ".eml") && format != FormatMbox:
			folder := folderOf(filepath.Dir(rel))
			if err := scanEML(p, folder, fn); err != nil {
				var ie *InputError
				if errors.As(err, &ie) {
					bad(err)
					continue
				}
				return err
			}
		default:
			if !startsWithFrom(p) {
				if format == FormatMbox || strings.HasSuffix(name, ".mbox") {
					bad(&InputError{File: p, Msg: "not an mbox file (it does not start with a \"From \" line); skipped"})
				} else if !isKnownNoise(name) {
					bad(&InputError{File: p, Msg: "not mail (neither mbox nor .eml); skipped"})
				}
				continue
			}
			folder := folderOf(strings.TrimSuffix(rel, ".mbox"))
			if name == "mbox" && strings.HasSuffix(filepath.Dir(rel), ".mbox") {
				// Apple Mail: Name.mbox/mbox
				folder = folderOf(strings.TrimSuffix(filepath.Dir(rel), ".mbox"))
			}
			if err := scanMbox(p, folder, format == FormatTakeout, labelsAsFolders, fn, bad); err != nil {
				return err
			}
		}
	}
	return nil
}

func isKnownNoise(name string) bool {
	switch strings.ToLower(name) {
	case "readme", "readme.txt", "archive_browser.html", "msgfilterrules.dat", "popstate.dat", "filterlog.html":
		return true
	}
	return strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".html") || strings.HasSuffix(name, ".dat")
}

// folderOf turns a relative file path into a folder path: "/" separators,
// Thunderbird's "X.sbd" directories as "X", "." (the root) as INBOX.
func folderOf(rel string) string {
	rel = filepath.ToSlash(rel)
	if rel == "." || rel == "" {
		return "INBOX"
	}
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = archive.UnescapeSegment(strings.TrimSuffix(s, ".sbd"))
	}
	if strings.EqualFold(segs[0], "inbox") && len(segs) == 1 {
		segs[0] = "INBOX"
	}
	return strings.Join(segs, "/")
}

func startsWithFrom(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [5]byte
	n, _ := io.ReadFull(f, b[:])
	return n == 5 && string(b[:]) == "From "
}

func isMaildir(p string) bool {
	for _, d := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(p, d)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// scanMaildirPP reads a Maildir++ tree: the root is INBOX, ".A.B" is A/B.
func scanMaildirPP(root string, fn func(*Item) error, bad func(error)) error {
	if err := scanMaildir(root, "INBOX", fn, bad); err != nil {
		return err
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".") || e.Name() == "." || e.Name() == ".." {
			continue
		}
		p := filepath.Join(root, e.Name())
		if !isMaildir(p) {
			continue
		}
		folder := strings.ReplaceAll(strings.TrimPrefix(e.Name(), "."), ".", "/")
		if err := scanMaildir(p, folder, fn, bad); err != nil {
			return err
		}
	}
	return nil
}

// scanMaildir reads one Maildir: flags from the ":2," suffix, dates from
// the file's modification time (which mbsync and Dovecot set to the
// arrival date).
func scanMaildir(dir, folder string, fn func(*Item) error, bad func(error)) error {
	var names []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, filepath.Join(sub, e.Name()))
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			bad(err)
			continue
		}
		hdr, size, err := readHeaderAndCount(f)
		f.Close()
		if err != nil {
			bad(&InputError{File: p, Msg: err.Error()})
			continue
		}
		h := parseHeader(hdr)
		meta := message.Meta{Folder: folder, Size: size, MessageID: h.messageID, InternalDate: fi.ModTime()}
		meta.Flags = maildirFlags(n)
		if meta.Flags == nil {
			meta.Flags = h.flags()
		}
		path := p
		it := &Item{Meta: meta, Source: p, ID: maildirID(p), open: func() (io.ReadCloser, error) { return os.Open(path) }}
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

// maildirID is a Maildir file's name without its flags, stable when the
// flags change.
func maildirID(p string) string {
	if i := strings.LastIndex(p, ":2,"); i >= 0 {
		return p[:i]
	}
	return p
}

// maildirFlags reads the ":2,FLAGS" suffix; nil when there is none.
func maildirFlags(name string) []string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		if strings.HasPrefix(name, "new"+string(filepath.Separator)) {
			return []string{}
		}
		return nil
	}
	flags := []string{}
	for _, c := range name[i+3:] {
		switch c {
		case 'S':
			flags = append(flags, `\Seen`)
		case 'R':
			flags = append(flags, `\Answered`)
		case 'F':
			flags = append(flags, `\Flagged`)
		case 'T':
			flags = append(flags, `\Deleted`)
		case 'D':
			flags = append(flags, `\Draft`)
		case 'P':
			flags = append(flags, `$Forwarded`)
		}
	}
	return flags
}

// protonMeta is the .metadata.json that Proton's export tool writes beside
// each .eml.
type protonMeta struct {
	Payload struct {
		ID           string   `json:"ID"`
		LabelIDs     []string `json:"LabelIDs"`
		Unread       int      `json:"Unread"`
		Time         int64    `json:"Time"`
		Flags        int64    `json:"Flags"`
		IsReplied    int      `json:"IsReplied"`
		IsRepliedAll int      `json:"IsRepliedAll"`
		IsForwarded  int      `json:"IsForwarded"`
	} `json:"Payload"`
}

func readProtonMetadata(emlPath string) (*protonMeta, error) {
	p := strings.TrimSuffix(emlPath, ".eml") + ".metadata.json"
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var pm protonMeta
	if err := json.Unmarshal(b, &pm); err != nil {
		return nil, err
	}
	return &pm, nil
}

// Proton's system label IDs.
var protonLabels = map[string]string{"0": "INBOX", "1": "", "2": "", "3": "Trash", "4": "Spam", "5": "", "6": "Archive", "7": "Sent", "8": "Drafts", "10": "Starred"}

func (pm *protonMeta) apply(m *message.Meta) {
	p := pm.Payload
	if p.Time > 0 {
		m.InternalDate = time.Unix(p.Time, 0)
	}
	m.PMInternalID = p.ID
	m.Flags = []string{}
	if p.Unread == 0 {
		m.Flags = append(m.Flags, `\Seen`)
	}
	for _, l := range p.LabelIDs {
		if l == "10" {
			m.Flags = append(m.Flags, `\Flagged`)
			m.Labels = append(m.Labels, "Starred")
		}
	}
	if p.IsReplied != 0 || p.IsRepliedAll != 0 {
		m.Flags = append(m.Flags, `\Answered`)
	}
	if p.IsForwarded != 0 {
		m.Flags = append(m.Flags, `$Forwarded`)
	}
	for _, l := range p.LabelIDs {
		if f, ok := protonLabels[l]; ok && f != "" && f != "Starred" && m.Folder == "INBOX" {
			m.Folder = f
			break
		}
	}
}
