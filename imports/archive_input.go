package imports

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	stdhash "hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"filippo.io/age"

	"github.com/mailmove/mailmove/formats/archive"
)

// scanArchive reads a mailmove archive through its index. The index is
// input like any other, not code: an entry whose file lies outside the
// archive (an absolute path, "..", the .mailmove state folder) is
// reported through bad and never read; the files are opened without
// following a symlink, and only regular files are read (see openInside).
// Each message is compared with its index (size, SHA-256) as it is read:
// a message that does not match fails to read, so it is reported, never
// uploaded.
func scanArchive(root string, labelsAsFolders bool, ids []age.Identity, fn func(*Item) error, bad func(error)) error {
	a, err := archive.OpenReadOnly(root)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.SetIdentities(ids); err != nil {
		return err
	}
	if err := a.NeedIdentity(); err != nil {
		return err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	// r stays open for the length of the import (the items open their
	// files through it); it is one descriptor, closed by its finalizer.
	var stored map[string]archive.Record
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
		// read from the stored copy, and checked against that copy's size
		// and SHA-256. Aliases of a copy in this folder (after a UIDVALIDITY
		// change) are the same message again.
		here := map[string]bool{}
		for _, rec := range recs {
			if !rec.Alias && !rec.LabelCopy {
				here[fmt.Sprintf("%s@%d", rec.File, rec.Offset)] = true
			}
		}
		for _, rec := range recs {
			if rec.LabelCopy {
				continue
			}
			id := fmt.Sprintf("%s@%d", rec.File, rec.Offset)
			if rec.Alias {
				if here[id] {
					continue
				}
				here[id] = true
				if stored == nil {
					if stored, err = storedRecords(a); err != nil {
						return err
					}
				}
				s, ok := stored[id]
				if !ok {
					continue // points to nothing stored: nothing to read
				}
				rec.Size, rec.SHA256 = s.Size, s.SHA256
				rec.StatusAt, rec.StatusLen, rec.LFRawFrom, rec.Length = s.StatusAt, s.StatusLen, s.LFRawFrom, s.Length
				id += " in " + folder
			}
			rec := rec
			src := rec.File
			if rec.Length > 0 {
				src = fmt.Sprintf("%s at byte %d", rec.File, rec.Offset)
			}
			if why := outsideArchive(rec.File); why != "" {
				bad(&InputError{File: src, Msg: "the archive's index (folder " + folder + ") points " + why + "; refused, not read"})
				continue
			}
			it := &Item{Meta: rec.Meta, Role: role, Source: src, ID: id, indexed: true}
			it.open = func() (io.ReadCloser, error) { return openArchived(r, a, rec) }
			for _, x := range gmailArchiveItems(it, labelsAsFolders) { // gmail.go
				if err := fn(x); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// scanDeleted reads the deleted area of a mailmove archive (the messages
// that export --mirror moved out of their folders) through its index,
// .mailmove/deleted.jsonl: each message goes back to its folder with its
// flags and arrival date, read and checked as scanArchive reads a folder's
// messages. In an encrypted archive it needs the identities, as the
// archive does.
func scanDeleted(root string, labelsAsFolders bool, ids []age.Identity, fn func(*Item) error, bad func(error)) error {
	a, err := archive.OpenReadOnly(root)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.SetIdentities(ids); err != nil {
		return err
	}
	if err := a.NeedIdentity(); err != nil {
		return err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	del, err := a.DeletedRecords()
	if err != nil {
		return err
	}
	var stored map[string]archive.Record
	for _, d := range del {
		rec := d.Record
		if rec.LabelCopy {
			continue
		}
		id := fmt.Sprintf("%s@%d", rec.File, rec.Offset)
		if rec.Alias {
			// its bytes are another record's: in a folder, or moved too
			if stored == nil {
				if stored, err = storedRecords(a); err != nil {
					return err
				}
				for _, o := range del {
					if !o.Alias {
						stored[fmt.Sprintf("%s@%d", o.File, o.Offset)] = o.Record
					}
				}
			}
			s, ok := stored[id]
			if !ok {
				continue // points to nothing stored: nothing to read
			}
			rec.Size, rec.SHA256 = s.Size, s.SHA256
			rec.StatusAt, rec.StatusLen, rec.LFRawFrom, rec.Length = s.StatusAt, s.StatusLen, s.LFRawFrom, s.Length
		}
		id += fmt.Sprintf(" deleted from %s uid %d/%d", rec.Folder, rec.UIDValidity, rec.UID)
		src := rec.File
		if rec.Length > 0 {
			src = fmt.Sprintf("%s at byte %d", rec.File, rec.Offset)
		}
		if why := outsideArchive(rec.File); why != "" {
			bad(&InputError{File: src, Msg: "the archive's deleted area index (" + archive.DeletedIndex + ") points " + why + "; refused, not read"})
			continue
		}
		role := ""
		for _, at := range a.State(rec.Folder).Attrs {
			if roleAttr(at) != "" {
				role = roleAttr(at)
			}
		}
		it := &Item{Meta: rec.Meta, Role: role, Source: src, ID: id, indexed: true}
		it.open = func() (io.ReadCloser, error) { return openArchived(r, a, rec) }
		for _, x := range gmailArchiveItems(it, labelsAsFolders) { // gmail.go
			if err := fn(x); err != nil {
				return err
			}
		}
	}
	return nil
}

// storedRecords maps "file@offset" of every message stored in an archive
// to its record.
func storedRecords(a *archive.Archive) (map[string]archive.Record, error) {
	out := map[string]archive.Record{}
	for _, folder := range a.Folders() {
		recs, err := a.Records(folder)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if !r.Alias {
				out[fmt.Sprintf("%s@%d", r.File, r.Offset)] = r
			}
		}
	}
	return out, nil
}

// outsideArchive says why an index entry's file is not a file of the
// archive, or "" when it is one.
func outsideArchive(file string) string {
	switch {
	case file == "":
		return "to no file"
	case strings.HasPrefix(file, "/") || filepath.IsAbs(file) || filepath.VolumeName(file) != "":
		return "to an absolute path (" + file + ")"
	case strings.Contains(file, "\\") || strings.ContainsRune(file, 0):
		return "to a file name that no archive writes (" + file + ")"
	case !fs.ValidPath(file) || !filepath.IsLocal(filepath.FromSlash(file)):
		return "outside the archive (" + file + ")"
	}
	if first, _, _ := strings.Cut(path.Clean(file), "/"); first == archive.StateDir {
		return "into the archive's state folder " + archive.StateDir + " (" + file + ")"
	}
	return ""
}

// openInside opens a file of the archive for reading: never through a
// symlink (a symlink anywhere, inside or outside the archive, is refused),
// never outside root, and only a regular file. It looks first (lstat),
// opens without blocking (O_NONBLOCK: a FIFO cannot hang it), and checks
// that what it opened is the regular file it looked at (fstat).
func openInside(root *os.Root, file string) (*os.File, error) {
	name := filepath.FromSlash(file)
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, errors.New("is a symbolic link; an archive's message files are regular files: refused, not read")
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("is not a regular file (%s); refused, not read", fi.Mode().Type())
	}
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	ofi, err := f.Stat()
	if err == nil && (!ofi.Mode().IsRegular() || !os.SameFile(fi, ofi)) {
		err = errors.New("changed while it was opened (it is not the regular file it was); refused, not read")
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openArchived returns the bytes of an archived message as the server sent
// them (like archive.OpenMessage), through openInside, checked against the
// index as they are read.
func openArchived(root *os.Root, a *archive.Archive, rec archive.Record) (io.ReadCloser, error) {
	f, err := openInside(root, rec.File)
	if err != nil {
		return nil, &InputError{File: rec.File, Msg: err.Error()}
	}
	body, err := a.MessageReader(f, rec)
	if err != nil {
		f.Close()
		return nil, &InputError{File: rec.File, Msg: fmt.Sprintf("where the index says a message is: %v", err)}
	}
	return &verified{r: body, c: f, h: sha256.New(), rec: rec}, nil
}

// verified reads a message and, at its end, compares it with its index
// entry: a different size or SHA-256 is an error in place of io.EOF, so
// that the message is reported, never sent.
type verified struct {
	r   io.Reader
	c   io.Closer
	h   stdhash.Hash
	n   int64
	rec archive.Record
}

func (v *verified) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		switch sum := hex.EncodeToString(v.h.Sum(nil)); {
		case v.n != v.rec.Size:
			return n, &InputError{File: v.rec.File, Msg: fmt.Sprintf("%d bytes stored, the index says %d: the file was changed or damaged (see mailmove check); not imported", v.n, v.rec.Size)}
		case v.rec.SHA256 != "" && sum != v.rec.SHA256:
			return n, &InputError{File: v.rec.File, Msg: "the stored bytes do not match their SHA-256 in the index: the file was changed or damaged (see mailmove check); not imported"}
		}
	}
	return n, err
}

func (v *verified) Close() error { return v.c.Close() }
