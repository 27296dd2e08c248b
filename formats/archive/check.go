package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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
}

// Check reads every message the index records and verifies its size and
// SHA-256, and that no message file holds anything the index does not know
// (a torn mbox tail, a stray .eml). It changes nothing.
func (a *Archive) Check() (*CheckResult, error) {
	res := &CheckResult{Problems: []Problem{}}
	known := map[string]bool{}
	for _, folder := range a.Folders() {
		res.Folders++
		recs, err := a.Records(folder)
		if err != nil {
			res.Problems = append(res.Problems, Problem{Folder: folder, What: "index: " + err.Error()})
			continue
		}
		var mboxFile string
		var end int64
		for _, r := range recs {
			known[r.File] = true
			if r.Alias {
				continue
			}
			res.Messages++
			res.Bytes += r.Size
			sum, n, err := a.hashStored(r)
			switch {
			case err != nil:
				res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: err.Error()})
			case n != r.Size:
				res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: fmt.Sprintf("%d bytes stored, the index says %d", n, r.Size)})
			case sum != r.SHA256:
				res.Problems = append(res.Problems, Problem{Folder: folder, File: r.File, UID: r.UID, What: "the stored bytes do not match their SHA-256: the file was changed or damaged"})
			}
			if r.Length > 0 {
				mboxFile = r.File
				end = max(end, r.Offset+r.Length)
			}
		}
		if mboxFile != "" {
			if fi, err := os.Stat(filepath.Join(a.Root, filepath.FromSlash(mboxFile))); err == nil && fi.Size() > end {
				res.Problems = append(res.Problems, Problem{Folder: folder, File: mboxFile, What: fmt.Sprintf("%d bytes after the last indexed message (an interrupted run; the next export cuts them)", fi.Size()-end)})
			}
		}
	}
	if a.Header.Format == EML {
		filepath.WalkDir(a.Root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			rel, _ := filepath.Rel(a.Root, p)
			if d.IsDir() {
				if rel == StateDir {
					return filepath.SkipDir
				}
				return nil
			}
			if !known[filepath.ToSlash(rel)] {
				res.Problems = append(res.Problems, Problem{File: filepath.ToSlash(rel), What: "a file the index does not know"})
			}
			return nil
		})
	}
	return res, nil
}

// hashStored reads a stored message and returns its SHA-256 and size.
func (a *Archive) hashStored(r Record) (string, int64, error) {
	p := filepath.Join(a.Root, filepath.FromSlash(r.File))
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	var body io.Reader = f
	if r.Length > 0 {
		mr := mbox.NewReader(io.NewSectionReader(f, r.Offset, r.Length))
		mr.ContentLength = false
		m, err := mr.Next()
		if err != nil {
			return "", 0, fmt.Errorf("no message at byte %d: %v", r.Offset, err)
		}
		if !strings.HasPrefix(m.FromLine, "From ") {
			return "", 0, fmt.Errorf("no From_ line at byte %d", r.Offset)
		}
		// a message without a final newline gained one in the mbox
		body = io.LimitReader(m, r.Size)
	}
	h := sha256.New()
	n, err := io.Copy(h, body)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
