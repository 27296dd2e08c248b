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
	"regexp"
	"strings"
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
//
// In an encrypted archive the lines of deleted.jsonl are clear records
// (see Archive.clearRecord): the writer that moved the messages holds no
// private key, so it never knew their secrets. With the archive's
// identities each is given its secrets back from the sealed record of the
// same message in its folder's index (which stays there, taken out of the
// folder by a gone line): a line with no such record, or one that differs
// from it, is damage. Without them the records keep their clear fields.
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
	if a.Encrypted() && len(a.identities) > 0 {
		return a.unsealDeleted(out)
	}
	return out, nil
}

// unsealDeleted gives the clear records of an encrypted archive's deleted
// area their secrets back from the sealed records of their folders'
// indexes.
func (a *Archive) unsealDeleted(del []Deleted) ([]Deleted, error) {
	full := map[string]map[[2]uint32]Record{}
	for i, d := range del {
		m, ok := full[d.Folder]
		if !ok {
			recs, _, err := readIndex(a.indexPath(d.Folder), 0)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
			if recs, err = a.unseal(recs); err != nil {
				return nil, err
			}
			// the records as they were before the gone lines took them out
			kept := recs[:0]
			for _, r := range recs {
				if !r.Gone {
					kept = append(kept, r)
				}
			}
			m = map[[2]uint32]Record{}
			for _, r := range Merge(kept) {
				m[[2]uint32{r.UIDValidity, r.UID}] = r
			}
			full[d.Folder] = m
		}
		f, ok := m[[2]uint32{d.UIDValidity, d.UID}]
		if !ok {
			return nil, fmt.Errorf("%s: folder %s UID %d has no sealed record in the folder's index: the deleted area's index was changed or damaged", DeletedIndex, d.Folder, d.UID)
		}
		if f.Offset != d.Offset || f.Length != d.Length || f.Size != d.Size || (f.File != d.File && !movedFrom(d.File, f.File)) {
			return nil, fmt.Errorf("%s: folder %s UID %d: the clear line and the sealed record differ: the index was changed or damaged", DeletedIndex, d.Folder, d.UID)
		}
		f.File, f.FileSize, f.Tag, f.FlagsSum = d.File, d.FileSize, d.Tag, d.FlagsSum
		del[i].Record = f
	}
	return del, nil
}

// movedFrom reports whether moved is file moved to the deleted area:
// DeletedDir/YYYY-MM-DD/file.
func movedFrom(moved, file string) bool {
	day, rest, ok := strings.Cut(strings.TrimPrefix(moved, DeletedDir+"/"), "/")
	return ok && strings.HasPrefix(moved, DeletedDir+"/") && deletedDay.MatchString(day) && rest == file
}

// clearDeleted is what the deleted area of an encrypted archive keeps of
// r: its clear record (r itself when it is one already, as a writer
// without the private key reads it).
func (a *Archive) clearDeleted(r Record) Record {
	if r.SHA256 != "" {
		return a.clearRecord(r)
	}
	r.Flags, r.Labels, r.MessageID = nil, nil, ""
	return r
}

// MoveDeleted moves the messages of folder recorded by gone (records of
// Records(folder)) to the deleted area, found gone at when: an .eml file
// moves to DeletedDir/YYYY-MM-DD/<its path>, unless another record in the
// archive still points to it; the deleted index records each message;
// then a Gone line in the folder's index takes it out of the folder. Each
// step is durable before the next, and a run that stops half way is
// finished by the next one that finds the same messages gone. It returns
// how many messages were moved. No folder writer of folder may be open.
//
// In an encrypted archive it needs only the recipients: the gone lines are
// sealed as an index commit is (a sealed line, then their clear lines) and
// deleted.jsonl gets clear records, whose secrets stay in the sealed
// records of the folder's index (see DeletedRecords).
func (a *Archive) MoveDeleted(folder string, gone []Record, when time.Time) (int, error) {
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
	if a.Encrypted() && len(a.recipients) == 0 {
		return 0, errors.New("the encrypted archive was opened without its recipients")
	}
	var lines bytes.Buffer
	var marks []Record
	dirs := map[string]bool{}
	for _, r := range gone {
		d := Deleted{Record: r, DeletedAt: when.UTC()}
		if a.Header.Format == EML && !r.Alias && !used[r.File] && localPath(r.File) {
			rel := path.Join(DeletedDir, day, r.File)
			src := filepath.Join(a.Root, filepath.FromSlash(r.File))
			if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
				// moved by a run that stopped before its index lines,
				// maybe on an earlier day
				prev := a.movedEarlier(r.File)
				if prev == "" {
					return 0, fmt.Errorf("moving %s to %s: %w", r.File, DeletedDir, err)
				}
				rel = prev
			} else {
				dst := filepath.Join(a.Root, filepath.FromSlash(rel))
				if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
					return 0, err
				}
				if err := os.Rename(src, dst); err != nil {
					return 0, fmt.Errorf("moving %s to %s: %w", r.File, rel, err)
				}
				dirs[filepath.Dir(src)], dirs[filepath.Dir(dst)] = true, true
			}
			d.File = rel
		}
		if a.Encrypted() {
			d.Record = a.clearDeleted(d.Record)
		}
		b, err := json.Marshal(&d)
		if err != nil {
			return 0, err
		}
		lines.Write(append(b, '\n'))
		marks = append(marks, Record{Meta: message.Meta{Folder: r.Folder, UIDValidity: r.UIDValidity, UID: r.UID}, File: r.File, Gone: true})
	}
	var markLines bytes.Buffer
	if a.Encrypted() {
		b, err := a.sealLines(marks)
		if err != nil {
			return 0, err
		}
		markLines.Write(b)
	} else {
		for i := range marks {
			m, _ := json.Marshal(&marks[i])
			markLines.Write(append(m, '\n'))
		}
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return 0, err
		}
	}
	dp := filepath.Join(a.Root, filepath.FromSlash(DeletedIndex))
	if err := cutTornLine(dp); err != nil {
		return 0, err
	}
	if err := appendSync(dp, lines.Bytes()); err != nil {
		return 0, err
	}
	if err := a.require(VersionUpdates); err != nil {
		return 0, err
	}
	if err := appendSync(a.indexPath(folder), markLines.Bytes()); err != nil {
		return 0, err
	}
	a.mu.Lock()
	if st, ok := a.folders[folder]; ok {
		st.IndexSize += int64(markLines.Len())
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

// movedEarlier returns where, under DeletedDir/YYYY-MM-DD/, an earlier
// run moved the message file file (with "/"), or "" when none did.
func (a *Archive) movedEarlier(file string) string {
	days, _ := os.ReadDir(filepath.Join(a.Root, DeletedDir))
	for i := len(days) - 1; i >= 0; i-- {
		d := days[i]
		if !d.IsDir() || !deletedDay.MatchString(d.Name()) {
			continue
		}
		rel := path.Join(DeletedDir, d.Name(), file)
		if fi, err := os.Lstat(filepath.Join(a.Root, filepath.FromSlash(rel))); err == nil && fi.Mode().IsRegular() {
			return rel
		}
	}
	return ""
}

// deletedDay is the name of a day's folder in the deleted area.
var deletedDay = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

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

// cutTornLine cuts what follows the last newline of the file at p: a line
// torn by a run that stopped while appending it (the messages it recorded
// are still in their folders, and are moved again). A missing file is
// left missing.
func cutTornLine(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	// Look back for the last newline, a block at a time.
	end := fi.Size()
	buf := make([]byte, 4096)
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			if cut := pos + int64(i) + 1; cut < end {
				if err := f.Truncate(cut); err != nil {
					return err
				}
				return f.Sync()
			}
			return nil
		}
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	return f.Sync()
}
