package imports

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Kinds of bad input, for errors.Is on an *InputError.
var (
	// ErrNotRegular: a named pipe, socket or device where mail was
	// expected; it is never opened for reading.
	ErrNotRegular = errors.New("not a regular file")
	// ErrBrokenLink: a symbolic link whose target does not exist, or a
	// loop of links.
	ErrBrokenLink = errors.New("broken symbolic link")
	// ErrLinkToFolder: a symbolic link to a folder inside a tree; it is
	// not followed (it could lead in circles or out of the tree).
	ErrLinkToFolder = errors.New("symbolic link to a folder")
	// ErrNotMail: a file that is neither an mbox file, an .eml file nor a
	// known mail program's file.
	ErrNotMail = errors.New("not mail")
	// ErrCompressed: a compressed file (.gz, .bz2, .xz, .zst).
	ErrCompressed = errors.New("compressed file")
	// ErrUnfinished: a file in a Maildir's tmp/, a delivery that never
	// finished; it is not imported.
	ErrUnfinished = errors.New("unfinished Maildir delivery")
)

// openRegular opens a file for reading only if it is a regular file: it is
// opened without blocking (a named pipe cannot hang the run) and checked
// with fstat before anything is read.
func openRegular(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, openFlags, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fi, fmt.Errorf("%w (%s)", ErrNotRegular, fileKind(fi.Mode()))
	}
	return f, fi, nil
}

// openMessageFile is openRegular for an Item's open function.
func openMessageFile(path string) (io.ReadCloser, error) {
	f, _, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0 || m&fs.ModeCharDevice != 0:
		return "a device"
	case m.IsDir():
		return "a folder"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}

// fileError turns an error from reading path into the InputError that
// reports it, with what to do.
func fileError(path, folder string, err error) *InputError {
	var ie *InputError
	if errors.As(err, &ie) {
		return ie
	}
	e := &InputError{File: path, Folder: folder, Err: err}
	switch {
	case errors.Is(err, ErrNotRegular):
		e.Msg = err.Error() + "; not read, skipped"
	case errors.Is(err, ErrLinkToFolder), errors.Is(err, ErrLinkOutside):
		e.Msg = err.Error()
	case errors.Is(err, fs.ErrPermission):
		e.Msg = "permission denied; skipped (make it readable for this user and run the import again)"
	case errors.Is(err, syscall.ELOOP):
		e.Err = fmt.Errorf("%w: %w", ErrBrokenLink, err)
		e.Msg = "a loop of symbolic links; skipped"
	case errors.Is(err, fs.ErrNotExist):
		e.Err = fmt.Errorf("%w: %w", ErrBrokenLink, err)
		e.Msg = "a symbolic link to something that does not exist (or the file went away); skipped"
	default:
		e.Msg = err.Error() + "; skipped"
	}
	return e
}

// ErrLinkOutside: a symbolic link to a file outside the source; not
// followed (a tree from someone else must not make import read and upload
// a file elsewhere).
var ErrLinkOutside = errors.New("symbolic link out of the source")

// statLink classifies a symbolic link found in the tree under root: the
// target's FileInfo when it is a file inside root, or the error to report.
func statLink(root, path string) (fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	t, _ := os.Readlink(path)
	if fi.IsDir() {
		return fi, fmt.Errorf("%w (to %s); not followed, skipped: import its target on its own if it holds mail", ErrLinkToFolder, t)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	top, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	if rel, err := filepath.Rel(top, real); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return nil, fmt.Errorf("%w (to %s); not followed, skipped: import its target on its own if it is mail", ErrLinkOutside, t)
	}
	return fi, nil
}

// sniff reads the start of a regular file: what it is, for messages.
type sniffed struct {
	size    int64
	from    bool   // an mbox: a From_ line, after blank lines at most
	binary  string // a known non-mail format ("a zip archive", ...)
	head    []byte
	isEmpty bool
}

func sniffFile(path string) (*sniffed, error) {
	f, fi, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	n, err := io.ReadFull(f, buf)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	s := &sniffed{size: fi.Size(), head: buf[:n], isEmpty: n == 0}
	rest := bytes.TrimLeft(s.head, "\r\n")
	s.from = bytes.HasPrefix(rest, []byte("From "))
	s.binary = binaryKind(s.head)
	return s, nil
}

// binaryKind names well-known non-mail formats by their magic bytes, or
// says that b is binary (it has NUL bytes).
func binaryKind(b []byte) string {
	if k := magicKind(b); k != "" {
		return k
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return "a binary file"
	}
	return ""
}

// magicKind names well-known non-mail formats by their magic bytes.
func magicKind(b []byte) string {
	for _, m := range []struct {
		magic, name string
	}{
		{"PK\x03\x04", "a zip archive"},
		{"\x89PNG\r\n\x1a\n", "a PNG image"},
		{"\xff\xd8\xff", "a JPEG image"},
		{"GIF8", "a GIF image"},
		{"%PDF-", "a PDF document"},
		{"\x1f\x8b", "a gzip-compressed file"},
		{"BZh", "a bzip2-compressed file"},
		{"\xfd7zXZ\x00", "an xz-compressed file"},
		{"\x28\xb5\x2f\xfd", "a zstd-compressed file"},
		{"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"},
		{"SQLite format 3\x00", "an SQLite database"},
		{"\xd0\xcf\x11\xe0", "an Office/Outlook (OLE) file"},
		{"!BDN", "an Outlook .pst file"},
		{"bplist", "a binary property list"},
	} {
		if bytes.HasPrefix(b, []byte(m.magic)) {
			return m.name
		}
	}
	return ""
}

// compressedHint says how to import a compressed mbox.
func compressedHint(path string) string {
	name := filepath.Base(path)
	ext := strings.ToLower(filepath.Ext(name))
	base := strings.TrimSuffix(name, filepath.Ext(name))
	tool := map[string]string{".gz": "gunzip", ".bz2": "bunzip2", ".xz": "unxz", ".zst": "unzstd"}[ext]
	if tool == "" {
		tool = "gunzip"
	}
	return fmt.Sprintf("compressed; not read: decompress it first (%s -k %q, which writes %q) and import that, or pipe it in: %s -c %q | mailmove import ... -", tool, name, base, tool, name)
}

// fieldDropper streams a message without some of its header fields: the
// bookkeeping that a mail program added to the file (mbsync's X-TUID,
// X-UID and Status of an IMAP server's mbox store), which is not part of
// the message the server served.
type fieldDropper struct {
	br       *bufio.Reader
	c        io.Closer
	drop     map[string]bool // lower-case field names
	inHeader bool
	dropping bool
	mid      bool // in the middle of a long line
	pending  []byte
	err      error
}

func dropFields(r io.ReadCloser, names ...string) io.ReadCloser {
	d := &fieldDropper{br: bufio.NewReaderSize(r, 16<<10), c: r, drop: map[string]bool{}, inHeader: true}
	for _, n := range names {
		d.drop[strings.ToLower(n)] = true
	}
	return d
}

func (d *fieldDropper) Close() error { return d.c.Close() }

func (d *fieldDropper) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if !d.inHeader {
			return d.br.Read(p)
		}
		line, err := d.br.ReadSlice('\n')
		if len(line) > 0 {
			if !d.mid {
				switch {
				case len(bytes.TrimRight(line, "\r\n")) == 0:
					d.inHeader, d.dropping = false, false
				case line[0] == ' ' || line[0] == '\t':
					// a continuation line: dropped with its field
				default:
					name, _, _ := bytes.Cut(line, []byte(":"))
					d.dropping = d.drop[strings.ToLower(string(bytes.TrimSpace(name)))]
				}
			}
			d.mid = err == bufio.ErrBufferFull
			if !d.dropping {
				d.pending = line
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			d.err = err
		}
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}
