package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mailmove/mailmove/formats/mbox"
)

// Problem is something Check found wrong in an archive.
type Problem struct {
	Folder string `json:"folder"`
	File   string `json:"file"`
	UID    uint32 `json:"uid,omitempty"`
	What   string `json:"problem"`
}

// CheckResult is what Check read.
type CheckResult struct {
	Folders  int       `json:"folders"`
	Messages int       `json:"messages"`
	Bytes    int64     `json:"bytes"`
	Problems []Problem `json:"problems"`
	// NotChecked says what could not be checked: in an encrypted archive
	// read without an identity, the messages' contents.
	NotChecked string `json:"not_checked,omitempty"`
}

// Check reads every message the index records and verifies its size and
// SHA-256, that no message file holds anything the index does not know (a
// torn mbox tail), and that the archive holds no other file outside
// .mailmove (a stray .eml, a temporary file, anything else). It changes
// nothing.
func (a *Archive) Check() (*CheckResult, error) {
	res := &CheckResult{Problems: []Problem{}}
	known := map[string]bool{}
	// Without the identity, an encrypted archive's files are checked for
	// presence and size only.
	light := a.Encrypted() && len(a.identities) == 0
	if light {
		res.NotChecked = "the messages' contents (their SHA-256) and the sealed part of the index: the archive is encrypted; pass --identity FILE for a full check"
	}
	sized := map[string]bool{}
	ends := map[string]int64{}  // mbox file -> end of its last indexed message
	tail := map[string]string{} // mbox file -> its folder
	verify := func(folder string, r Record) {
		res.Messages++
		res.Bytes += r.Size
		if r.FileSize > 0 && !sized[r.File] {
			sized[r.File] = true
			fi, err := os.Stat(filepath.Join(a.Root, filepath.FromSlash(r.File)))
			switch {
			case err != nil:
				res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: err.Error()})
				return
			case fi.Size() != r.FileSize:
				res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: fmt.Sprintf("the file has %d bytes, the index says %d: it was truncated or changed", fi.Size(), r.FileSize)})
				return
			}
		}
		if light {
			if _, err := os.Stat(filepath.Join(a.Root, filepath.FromSlash(r.File))); err != nil {
				res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: err.Error()})
			}
			return
		}
		sum, n, err := a.hashStored(r)
		switch {
		case err != nil:
			res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: err.Error()})
		case n != r.Size:
			res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: fmt.Sprintf("%d bytes stored, the index says %d", n, r.Size)})
		case sum != r.SHA256:
			res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: "the stored bytes do not match their SHA-256: the file was changed or damaged"})
		}
		if r.Length > 0 && !a.sealedMbox() {
			ends[r.File] = max(ends[r.File], r.Offset+r.Length)
			if _, ok := tail[r.File]; !ok {
				tail[r.File] = folder
			}
		}
	}
	for _, folder := range a.Folders() {
		res.Folders++
		recs, err := a.Records(folder)
		if err != nil {
			res.Problems = append(res.Problems, Problem{Folder: folder, What: "index: " + err.Error()})
			continue
		}
		for _, r := range recs {
			known[r.File] = true
			if !r.Alias {
				verify(folder, r)
			}
		}
	}
	// Messages deleted on the server and moved to the deleted area.
	deleted, err := a.DeletedRecords()
	if err != nil {
		res.Problems = append(res.Problems, Problem{File: DeletedIndex, What: err.Error()})
	}
	for _, d := range deleted {
		known[d.File] = true
		if !d.Alias {
			verify(d.Folder, d.Record)
		}
	}
	for _, file := range slices.Sorted(maps.Keys(ends)) {
		end := ends[file]
		if fi, err := os.Stat(filepath.Join(a.Root, filepath.FromSlash(file))); err == nil && fi.Size() > end {
			res.Problems = append(res.Problems, Problem{Folder: tail[file], File: file, What: fmt.Sprintf("%d bytes after the last indexed message (an interrupted run; the next export cuts them)", fi.Size()-end)})
		}
	}
	// Every file outside .mailmove must be a message file the index knows
	// (or a folder's mbox file, even an empty one).
	a.mu.Lock()
	for _, st := range a.folders {
		if a.Header.Format == Mbox && !a.sealedMbox() {
			known[a.mboxFile(st)] = true
		}
	}
	a.mu.Unlock()
	filepath.WalkDir(a.Root, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(a.Root, p)
		if err != nil {
			res.Problems = append(res.Problems, Problem{File: filepath.ToSlash(rel), What: "cannot be read: " + err.Error()})
			return nil
		}
		if d.IsDir() {
			if rel == StateDir {
				return filepath.SkipDir
			}
			return nil
		}
		if !known[filepath.ToSlash(rel)] {
			what := "a file the index does not know: not a message of this archive (move it out of the archive, or delete it if it is a leftover)"
			if strings.HasPrefix(d.Name(), ".mm-tmp-") {
				what = "a file the index does not know: an interrupted run's temporary file (the next export removes it)"
			}
			res.Problems = append(res.Problems, Problem{File: filepath.ToSlash(rel), What: what})
		}
		return nil
	})
	return res, nil
}

// hashStored reads a stored message and returns its SHA-256 and size.
func (a *Archive) hashStored(r Record) (string, int64, error) {
	rc, err := a.OpenMessage(r)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// OpenMessage returns the bytes of a stored message as the server sent
// them: from its .eml file, or from its mbox file unquoted, with CRLF line
// endings again in an LF archive, and without the line ending an mbox adds
// to a message that had none.
func (a *Archive) OpenMessage(r Record) (io.ReadCloser, error) {
	if !localPath(r.File) {
		return nil, fmt.Errorf("the index points to %q, outside the archive's message files; refusing to read it", r.File)
	}
	p := filepath.Join(a.Root, filepath.FromSlash(r.File))
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	body, err := a.MessageReader(f, r)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{body, f}, nil
}

// MessageReader reads the message that r records from f, the file r.File
// already opened (by a caller that opens it its own way), as the server
// sent it: the mbox From_ line and quoting taken off, line endings given
// back, the status lines of --mbox-status-headers left out. For an .eml it
// reads the whole file.
//
// In an encrypted or compressed archive it decrypts and decompresses on
// the fly, streaming; f must then tell its size (an *os.File does).
func (a *Archive) MessageReader(f io.ReaderAt, r Record) (io.Reader, error) {
	sealed := a.Encrypted() || a.Compressed()
	size := int64(1 << 62)
	if sealed && (r.Length <= 0 || a.Encrypted()) {
		if err := a.NeedIdentity(); err != nil {
			return nil, err
		}
		if size = fileSize(f); size < 0 {
			return nil, fmt.Errorf("%s: cannot tell the size of the file", r.File)
		}
	}
	if r.Length <= 0 {
		var body io.Reader = io.NewSectionReader(f, 0, size)
		if a.Encrypted() {
			d, err := a.decrypted(f, size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r.File, err)
			}
			body = d
		}
		if a.Compressed() {
			z, err := newZReader(body)
			if err != nil {
				return nil, err
			}
			body = z
		}
		return body, nil
	}
	src := io.Reader(io.NewSectionReader(f, r.Offset, r.Length))
	if a.sealedMbox() {
		ra, err := a.segmentReader(r.File, f, size)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.File, err)
		}
		src = &ageReader{r: io.NewSectionReader(ra, r.Offset, r.Length)}
	}
	if a.Compressed() {
		z, err := newZReader(src)
		if err != nil {
			return nil, err
		}
		src = z
	}
	mr := mbox.NewReader(src)
	mr.ContentLength = false
	m, err := mr.Next()
	if err != nil {
		return nil, fmt.Errorf("%s: no message at byte %d: %v", r.File, r.Offset, err)
	}
	if !strings.HasPrefix(m.FromLine, "From ") {
		return nil, fmt.Errorf("%s: no From_ line at byte %d", r.File, r.Offset)
	}
	var body io.Reader = m
	if a.Header.LF {
		raw := int64(-1)
		if r.LFRawFrom != nil {
			raw = *r.LFRawFrom
		}
		body = mbox.ToCRLF(m, raw)
	}
	if r.StatusLen > 0 {
		body = &cutReader{r: body, at: r.StatusAt, n: r.StatusLen}
	}
	return io.LimitReader(body, r.Size), nil
}

// cutReader leaves out n bytes at offset at of r: the lines export
// --mbox-status-headers added.
type cutReader struct {
	r     io.Reader
	at, n int64
	pos   int64
	cut   bool
}

func (c *cutReader) Read(p []byte) (int, error) {
	if !c.cut && c.pos == c.at {
		k, err := io.CopyN(io.Discard, c.r, c.n)
		if err != nil {
			return 0, fmt.Errorf("the status lines the index records end after %d of %d bytes: %w", k, c.n, io.ErrUnexpectedEOF)
		}
		c.cut = true
	}
	if !c.cut && int64(len(p)) > c.at-c.pos {
		p = p[:c.at-c.pos]
	}
	k, err := c.r.Read(p)
	c.pos += int64(k)
	return k, err
}
