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
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

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
	// indexed: Meta is what a mailmove archive's index records (its Size
	// the size stored), not what a scan of the bytes found
	indexed bool

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

// InputError is bad input: a file that is not mail, a truncated mbox, an
// unreadable file, a named pipe, a broken link, ... Each one is one
// reported item.
type InputError struct {
	// File is the file or folder reported.
	File string
	// Line is the line of an mbox file, if known.
	Line int64
	// Folder is the source folder the file belongs to, if known.
	Folder string
	// Msg says what is wrong and what was done.
	Msg string
	// Err is the kind of problem (ErrNotMail, ErrNotRegular,
	// fs.ErrPermission, ...), for errors.Is; nil if none applies.
	Err error
}

// Unwrap returns the kind of problem.
func (e *InputError) Unwrap() error { return e.Err }

func (e *InputError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return e.File + ": " + e.Msg
}

// Scan finds every message in path (a file or a folder) and calls fn for
// each, folder by folder. Whatever is not mail (and not a mail program's
// known metadata) is reported through bad, one *InputError each, and
// skipped; the rest is still read. Nothing that is not a regular file is
// ever opened for reading.
func Scan(path string, format Format, labelsAsFolders bool, fn func(*Item) error, bad func(error)) error {
	return ScanWith(path, format, labelsAsFolders, nil, fn, bad)
}

// ScanWith is Scan with the identities that decrypt an encrypted mailmove
// archive; without them, such an archive is an archive.EncryptedError.
func ScanWith(path string, format Format, labelsAsFolders bool, ids []age.Identity, fn func(*Item) error, bad func(error)) error {
	if root := filepath.Dir(filepath.Clean(path)); filepath.Base(filepath.Clean(path)) == archive.DeletedDir && (format == FormatAuto || format == FormatArchive) {
		if _, err := os.Stat(filepath.Join(root, archive.StateDir, "archive.json")); err == nil {
			// OUT/.deleted: the deleted area of the archive OUT (--mirror)
			return scanDeleted(root, labelsAsFolders, ids, fn, bad)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return scanFile(path, format, labelsAsFolders, fn, bad)
	}
	if _, err := os.Stat(filepath.Join(path, archive.StateDir, "archive.json")); err == nil && (format == FormatAuto || format == FormatArchive) {
		return scanArchive(path, labelsAsFolders, ids, fn, bad)
	}
	return scanTree(path, format, labelsAsFolders, fn, bad)
}

// scanFile reads a source that is one file: an mbox (its messages go to
// INBOX) or an .eml.
func scanFile(path string, format Format, labelsAsFolders bool, fn func(*Item) error, bad func(error)) error {
	lower := strings.ToLower(path)
	if format == FormatEML || (format == FormatAuto && strings.HasSuffix(lower, ".eml")) {
		err := scanEML(path, "INBOX", fn)
		var ie *InputError
		if errors.As(err, &ie) {
			bad(err)
			return nil
		}
		return err
	}
	if isCompressedName(lower) {
		bad(&InputError{File: path, Err: ErrCompressed, Msg: compressedHint(path)})
		return nil
	}
	s, err := sniffFile(path)
	if err != nil {
		bad(fileError(path, "INBOX", err))
		return nil
	}
	if !s.from && !s.isEmpty {
		bad(notMail(path, "INBOX", s, FormatMbox))
		return nil
	}
	return scanMbox(path, "INBOX", format == FormatTakeout, labelsAsFolders, fn, bad)
}

// openMboxAt returns the message whose From_ line is at off in an mbox
// file (Content-Length honoured where it fits, for mboxcl2 files).
func openMboxAt(path string, off int64) (io.ReadCloser, error) {
	f, fi, err := openRegular(path)
	if err != nil {
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
	f, _, err := openRegular(path)
	if err != nil {
		bad(fileError(path, folder, err))
		return nil
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
			bad(&InputError{File: path, Folder: folder, Err: ErrNotMail, Msg: "not an mbox file (it does not start with a \"From \" line); skipped"})
			return nil
		}
		if err != nil {
			bad(&InputError{File: path, Folder: folder, Msg: err.Error(), Err: err})
			break
		}
		hdr, n, herr := readHeaderAndCount(m)
		if herr != nil {
			bad(&InputError{File: path, Folder: folder, Line: m.Line, Msg: herr.Error(), Err: herr})
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
		if h.imapStore {
			// Dovecot's (or UW-IMAP's) mbox store: its bookkeeping fields
			// are not part of the message it serves
			it.open = func() (io.ReadCloser, error) {
				r, err := openMboxAt(path, off)
				if err != nil {
					return nil, err
				}
				return dropFields(r, imapStoreFields...), nil
			}
		}
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

// imapStoreFields are the header fields that Dovecot and UW-IMAP keep in
// their mbox files for their own use, and hide when they serve a message.
var imapStoreFields = []string{"X-IMAPbase", "X-IMAP", "X-UID", "Status", "X-Status", "X-Keywords", "Content-Length"}

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
	f, fi, err := openRegular(path)
	if err != nil {
		return fileError(path, folder, err)
	}
	hdr, err := readHeader(f)
	f.Close()
	if err != nil {
		return &InputError{File: path, Folder: folder, Msg: err.Error(), Err: err}
	}
	if kind := magicKind(hdr); kind != "" {
		return &InputError{File: path, Folder: folder, Err: ErrNotMail, Msg: kind + ", not mail; skipped"}
	}
	if fi.Size() > maxMessageSize {
		return &InputError{File: path, Folder: folder, Msg: errTooBig.Error(), Err: errTooBig}
	}
	h := parseHeader(hdr)
	meta.Size = fi.Size()
	meta.MessageID = h.messageID
	meta.Flags = h.flags()
	meta.InternalDate = h.date
	if pm, err := readProtonMetadata(path); err == nil && pm != nil {
		pm.apply(&meta)
	}
	if meta.InternalDate.IsZero() {
		meta.InternalDate = fi.ModTime()
	}
	it := &Item{Meta: meta, Source: path, ID: path, open: func() (io.ReadCloser, error) { return openMessageFile(path) }}
	return fn(it)
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
