package archive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/mailmove/mailmove/message"
)

// DeletedDir is the archive's deleted area, relative to the root: the
// .eml files of messages deleted on the server, moved there by an export
// with Mirror, under DeletedDir/YYYY-MM-DD/ (the day they were found
// gone) and their old path. Its leading dot keeps it apart from every
// folder: EscapeSegment never writes a folder name with one.
const DeletedDir = ".deleted"

// DeletedIndex is the index of the deleted area, in the state folder: one
// Deleted record per line, in the order they were moved.
const DeletedIndex = StateDir + "/deleted.jsonl"

// Deleted is a message that was deleted on the server and moved out of its
// folder into the deleted area: its index record (File says where its bytes
// are now) and when it was found gone. Nothing is ever erased: an mbox
// message keeps its bytes where they were in its folder's mbox file (cutting
// them out would rewrite the file); an .eml message whose file another
// record still points to (the same Proton message in another folder) keeps
// its file too.
type Deleted struct {
	Record
	// DeletedAt is when the export found the message gone.
	DeletedAt time.Time `json:"deleted_at"`
}

// DeletedRecords returns the records of the deleted area, one per message
// (a record written twice by a run that stopped half way is given once).
func (a *Archive) DeletedRecords() ([]Deleted, error) {
	b, err := os.ReadFile(filepath.Join(a.Root, filepath.FromSlash(DeletedIndex)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type id struct {
		folder  string
		uv, uid uint32
	}
	seen := map[id]bool{}
	var out []Deleted
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var d Deleted
		if err := json.Unmarshal(line, &d); err != nil {
			if i == len(lines)-1 {
				break // a torn last line: that message is still in its folder
			}
			return out, fmt.Errorf("%s: damaged line %d: %v", DeletedIndex, i+1, err)
		}
		k := id{d.Folder, d.UIDValidity, d.UID}
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	return out, nil
}

// MoveDeleted moves the messages of folder recorded by gone (records of
// Records(folder)) to the deleted area, found gone at when: an .eml file
// moves to DeletedDir/YYYY-MM-DD/<its path>, unless another record in the
// archive still points to it; the deleted index records each message;
// then a Gone line in the folder's index takes it out of the folder. Each
// step is durable before the next, and a run that stops half way is
// finished by the next one that finds the same messages gone. It returns
// how many messages were moved. No folder writer of folder may be open.
// ErrMirrorEncrypted is MoveDeleted on an encrypted archive: its index
// lines are sealed for readers with the private key, which the writer does
// not hold, so a message cannot yet be moved to the deleted area there.
var ErrMirrorEncrypted = errors.New("mirror (--mirror, mirror = true) cannot move messages in an encrypted archive yet: messages deleted on the server stay in their folder, which is what a backup does without it; run without --mirror for this archive")

func (a *Archive) MoveDeleted(folder string, gone []Record, when time.Time) (int, error) {
	if a.Encrypted() {
		return 0, ErrMirrorEncrypted
	}
	if len(gone) == 0 {
		return 0, nil
	}
	if a.readOnly {
		return 0, errors.New("the archive is open read-only")
	}
	// Files that records outside gone still point to stay where they are.
	goneKey := map[[2]uint32]bool{}
	for _, r := range gone {
		goneKey[[2]uint32{r.UIDValidity, r.UID}] = true
	}
	used := map[string]bool{}
	for _, f := range a.Folders() {
		recs, err := a.Records(f)
		if err != nil {
			return 0, err
		}
		for _, r := range recs {
			if f == folder && goneKey[[2]uint32{r.UIDValidity, r.UID}] {
				continue
			}
			used[r.File] = true
		}
	}
	day := when.UTC().Format("2006-01-02")
	var lines, marks bytes.Buffer
	dirs := map[string]bool{}
	for _, r := range gone {
		d := Deleted{Record: r, DeletedAt: when.UTC()}
		if a.Header.Format == EML && !r.Alias && !used[r.File] && localPath(r.File) {
			rel := path.Join(DeletedDir, day, r.File)
			src := filepath.Join(a.Root, filepath.FromSlash(r.File))
			dst := filepath.Join(a.Root, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return 0, err
			}
			if err := os.Rename(src, dst); err != nil {
				// moved by a run that stopped before its index lines
				if _, serr := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) || serr != nil {
					return 0, fmt.Errorf("moving %s to %s: %w", r.File, rel, err)
				}
			}
			dirs[filepath.Dir(src)], dirs[filepath.Dir(dst)] = true, true
			d.File = rel
		}
		b, err := json.Marshal(&d)
		if err != nil {
			return 0, err
		}
		lines.Write(append(b, '\n'))
		m, _ := json.Marshal(&Record{Meta: message.Meta{Folder: r.Folder, UIDValidity: r.UIDValidity, UID: r.UID}, File: r.File, Gone: true})
		marks.Write(append(m, '\n'))
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return 0, err
		}
	}
	if err := appendSync(filepath.Join(a.Root, filepath.FromSlash(DeletedIndex)), lines.Bytes()); err != nil {
		return 0, err
	}
	if err := appendSync(a.indexPath(folder), marks.Bytes()); err != nil {
		return 0, err
	}
	a.mu.Lock()
	if st, ok := a.folders[folder]; ok {
		st.IndexSize += int64(marks.Len())
		a.dirty = true
	}
	if a.pmIDs != nil {
		for _, r := range gone {
			if r.PMInternalID != "" && !r.Alias {
				delete(a.pmIDs, r.PMInternalID)
			}
		}
	}
	a.mu.Unlock()
	return len(gone), nil
}

// appendSync appends b to the file at p and makes it durable.
func appendSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
