package imports

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// A foreign tree (anything but a mailmove archive) is walked once, every
// file and folder in it either read as mail, recognised as a mail
// program's own file (silently skipped), or reported through bad. The
// layouts understood:
//
//   - Maildir: a folder with cur/ and new/. The tree's top Maildir is
//     INBOX. Below a Maildir, ".A.B" folders are Maildir++ (Dovecot,
//     Courier, mbsync "SubFolders Maildir++"), plain folders are nested
//     levels (Dovecot LAYOUT=fs, mbsync "Verbatim"), ".B" inside a folder
//     is mbsync's "Legacy" level, ".B.directory" holds KMail's subfolders
//     of B. In a tree of Maildirs that are all side by side
//     (offlineimap's default "sep = ."), "A.B" is A/B and a leading
//     "INBOX." level is dropped (Courier's namespace: "INBOX.Sent" is
//     Sent; in Maildir++, ".INBOX.Sent" is a child of INBOX). Names of Maildir folders are decoded from modified UTF-7.
//   - mbox files: a file starting with a "From " line (after blank lines
//     at most) is a folder named after the file; "X.sbd/" holds
//     Thunderbird's subfolders of X, "X.mbox/" is Apple Mail's bundle
//     (its "mbox" file holds X's messages, its nested bundles are X's
//     subfolders). Names are taken as they are, but for Dovecot's mbox
//     store (recognised by its .imap folder), where they are modified
//     UTF-7.
//   - .eml files: one message each, in the folder of their directory.
//
// A folder containing one Maildir, named Maildir (or a Maildir++ or
// Dovecot Maildir with any name), and beside it only hidden files and mail
// programs' files (a copy of a user's home) is read as that Maildir: its
// top level is INBOX; the hidden files are still looked at.

// walker walks a foreign tree.
type walker struct {
	root            string // the source, as given
	skip            string // a folder already read (the Maildir found inside root)
	format          Format
	labelsAsFolders bool
	fn              func(*Item) error
	bad             func(error)
	dotLevels       bool // a flat tree of Maildirs: "A.B" is A/B (offlineimap's sep = .)
}

// dirKind says what a folder in the tree is.
type dirKind int

const (
	plainDir    dirKind = iota
	maildirRoot         // the tree's top Maildir: ".A.B" children are Maildir++ folders
	maildirDir          // a Maildir below the top: ".B" children are subfolders (mbsync Legacy)
	appleBundle         // Name.mbox/: "mbox" holds Name's messages
)

// segs is a folder path in the tree, before decoding.
type segs struct {
	s     []string
	mutf7 bool // names come from IMAP through a mail program: decode modified UTF-7
}

func (f segs) add(names ...string) segs {
	out := segs{s: append(append([]string(nil), f.s...), names...), mutf7: f.mutf7}
	return out
}

// name is the "/"-separated folder name: INBOX for the top.
func (f segs) name() string {
	if len(f.s) == 0 {
		return "INBOX"
	}
	out := make([]string, len(f.s))
	for i, s := range f.s {
		if f.mutf7 {
			s = decodeMUTF7(s)
		}
		out[i] = s
	}
	if strings.EqualFold(out[0], "inbox") {
		// Thunderbird's Inbox, KMail's inbox: INBOX, whose name is not
		// case-sensitive, also as a parent
		out[0] = "INBOX"
	}
	return strings.Join(out, "/")
}

// scanTree reads a foreign tree: Maildirs, mbox files and .eml files.
func scanTree(root string, format Format, labelsAsFolders bool, fn func(*Item) error, bad func(error)) error {
	w := &walker{root: root, format: format, labelsAsFolders: labelsAsFolders, fn: fn, bad: bad}
	if inner := storeTop(root); inner != "" {
		// the Maildir is INBOX; whatever else is beside it is still looked at
		top := segs{mutf7: true}
		if err := scanMaildir(w.root, inner, top.name(), fn, bad); err != nil {
			return err
		}
		if err := w.dir(inner, top, maildirRoot); err != nil {
			return err
		}
		w.skip = inner
		return w.dir(root, segs{}, plainDir)
	}
	if isMaildir(root) {
		top := segs{mutf7: true}
		if err := scanMaildir(w.root, root, top.name(), fn, bad); err != nil {
			return err
		}
		return w.dir(root, top, maildirRoot)
	}
	w.dotLevels = flatMaildirs(root)
	top := segs{}
	if fi, err := os.Lstat(filepath.Join(root, ".imap")); err == nil && fi.IsDir() {
		// Dovecot's mbox store: its index folder .imap is there, and the
		// names are IMAP's, in modified UTF-7
		top.mutf7 = true
	}
	return w.dir(root, top, plainDir)
}

// storeTop returns the Maildir inside root that is a mail store's top
// (named Maildir, or with Maildir++ folders or Dovecot's files in it) when
// nothing but hidden files and mail programs' files is beside it, as in a
// copy of a user's home; else "".
func storeTop(root string) string {
	if isMaildir(root) {
		return ""
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	var only string
	for _, e := range entries {
		name := e.Name()
		switch {
		case isNoise(name, e.IsDir()) || strings.HasPrefix(name, "."):
			continue // a program's files in a home: still looked at, below
		case only != "" || !e.IsDir() || !isMaildir(filepath.Join(root, name)):
			return "" // more mail beside it: the Maildir is one folder among others
		}
		only = name
	}
	if only == "" {
		return ""
	}
	p := filepath.Join(root, only)
	if strings.EqualFold(only, "maildir") {
		return p
	}
	if _, err := os.Lstat(filepath.Join(p, "dovecot-uidlist")); err == nil {
		return p
	}
	sub, _ := os.ReadDir(p)
	for _, e := range sub {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") && isMaildir(filepath.Join(p, e.Name())) {
			return p
		}
	}
	return ""
}

// flatMaildirs reports whether root is a flat tree of Maildirs (none
// inside another folder) where some names have dots: offlineimap's
// default "sep = .", where "Archive.2024" is Archive/2024.
func flatMaildirs(root string) bool {
	entries, err := os.ReadDir(root)
	if err != nil {
		return false
	}
	dots := false
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(root, e.Name())
		if !isMaildir(p) {
			return false
		}
		sub, _ := os.ReadDir(p)
		for _, s := range sub {
			switch s.Name() {
			case "cur", "new", "tmp", "courierimapkeywords":
				continue
			}
			if s.IsDir() {
				return false // nested: the tree's levels are folders
			}
		}
		if strings.Contains(e.Name(), ".") {
			dots = true
		}
	}
	return dots
}

// dotLevelNames splits "A.B" into levels, with dropInbox dropping a
// leading "INBOX." (the namespace prefix of Courier and Cyrus, which
// offlineimap keeps in its names; Maildir++ folders are below INBOX
// already, so there ".INBOX.A" is a real child of INBOX); a name with an
// empty level ("a..b", "x.") is kept whole.
func dotLevelNames(name string, dropInbox bool) []string {
	parts := strings.Split(name, ".")
	for _, p := range parts {
		if p == "" {
			return []string{name}
		}
	}
	if dropInbox && len(parts) > 1 && strings.EqualFold(parts[0], "INBOX") {
		parts = parts[1:]
	}
	return parts
}

// dir walks the folder d, whose messages belong to folder f.
func (w *walker) dir(d string, f segs, kind dirKind) error {
	entries, err := os.ReadDir(d)
	if err != nil {
		w.bad(fileError(d, f.name(), err))
		if len(entries) == 0 {
			return nil
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	inMaildir := kind == maildirRoot || kind == maildirDir
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(d, name)
		if p == w.skip {
			continue
		}
		if inMaildir && (name == "cur" || name == "new" || name == "tmp") {
			continue // read by scanMaildir
		}
		t := e.Type()
		var fi fs.FileInfo
		if t&fs.ModeSymlink != 0 {
			lfi, err := statLink(w.root, p)
			if err != nil {
				if errors.Is(err, ErrLinkToFolder) && isNoise(name, true) {
					continue
				}
				w.bad(fileError(p, f.name(), err))
				continue
			}
			fi, t = lfi, lfi.Mode().Type()
		}
		switch {
		case t.IsDir():
			if isNoise(name, true) {
				continue
			}
			if err := w.subdir(d, name, f, kind); err != nil {
				return err
			}
		case t.IsRegular():
			if isNoise(name, false) {
				continue
			}
			if err := w.file(p, name, f, kind, fi); err != nil {
				return err
			}
		default:
			w.bad(fileError(p, f.name(), fmt.Errorf("%w (%s)", ErrNotRegular, fileKind(t))))
		}
	}
	return nil
}

// subdir walks the folder name inside d (which is folder f of kind kind).
func (w *walker) subdir(d, name string, f segs, kind dirKind) error {
	p := filepath.Join(d, name)
	md := isMaildir(p)
	var child segs
	switch {
	case kind == maildirRoot && strings.HasPrefix(name, ".") && len(name) > 1:
		// Maildir++: .A.B is A/B, relative to the top
		child = segs{s: dotLevelNames(name[1:], false), mutf7: true}
		if !md {
			// an empty Maildir++ folder (Dovecot makes cur/ with the first
			// message), or a program's hidden folder: nothing to import,
			// but whatever is in it is looked at
			return w.dir(p, child, maildirDir)
		}
	case strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".directory") && len(name) > len(".directory")+1:
		// KMail: .X.directory holds the subfolders of X
		return w.dir(p, f.add(strings.TrimSuffix(name[1:], ".directory")), plainDir)
	case strings.HasSuffix(name, ".sbd") && len(name) > 4:
		// Thunderbird: X.sbd holds the subfolders of X
		return w.dir(p, f.add(strings.TrimSuffix(name, ".sbd")), plainDir)
	case strings.HasSuffix(strings.ToLower(name), ".mbox") && len(name) > 5 && !md:
		// Apple Mail's bundle
		return w.dir(p, f.add(name[:len(name)-5]), appleBundle)
	case strings.HasPrefix(name, ".") && len(name) > 1:
		// mbsync Legacy: A/.B is A/B; or a hidden folder of some program
		child = f.add(name[1:])
	case w.dotLevels && len(f.s) == 0 && md:
		child = segs{s: dotLevelNames(name, true), mutf7: true}
	default:
		child = f.add(name)
	}
	if !md {
		return w.dir(p, child, plainDir)
	}
	child.mutf7 = true
	if err := scanMaildir(w.root, p, child.name(), w.fn, w.bad); err != nil {
		return err
	}
	return w.dir(p, child, maildirDir)
}

// file reads one regular file of the tree, in folder f.
func (w *walker) file(p, name string, f segs, kind dirKind, fi fs.FileInfo) error {
	lower := strings.ToLower(name)
	if kind == maildirRoot || kind == maildirDir {
		if isMaildirNoise(name) {
			return nil
		}
	}
	switch {
	case strings.HasSuffix(lower, ".eml") && w.format != FormatMbox:
		return w.report(scanEML(p, f.name(), w.fn))
	case isCompressedName(lower):
		w.bad(&InputError{File: p, Folder: f.name(), Err: ErrCompressed, Msg: compressedHint(p)})
		return nil
	}
	s, err := sniffFile(p)
	if err != nil {
		w.bad(fileError(p, f.name(), err))
		return nil
	}
	folder := f
	switch {
	case kind == appleBundle && name == "mbox":
		// Name.mbox/mbox: the bundle's messages
	case strings.HasSuffix(lower, ".mbox") && len(name) > 5:
		folder = f.add(name[:len(name)-5])
	default:
		folder = f.add(name)
	}
	if s.isEmpty {
		return nil // an empty folder (Thunderbird keeps one for each)
	}
	if !s.from {
		w.bad(notMail(p, folder.name(), s, w.format))
		return nil
	}
	return scanMbox(p, folder.name(), w.format == FormatTakeout, w.labelsAsFolders, w.fn, w.bad)
}

// report passes an *InputError to bad; other errors stop the walk.
func (w *walker) report(err error) error {
	var ie *InputError
	if errors.As(err, &ie) {
		w.bad(err)
		return nil
	}
	return err
}

// notMail is the report for a file that is not mail.
func notMail(p, folder string, s *sniffed, format Format) *InputError {
	e := &InputError{File: p, Folder: folder, Err: ErrNotMail}
	lower := strings.ToLower(p)
	switch {
	case s.binary != "":
		e.Msg = s.binary + ", not mail; skipped"
		if strings.HasPrefix(s.binary, "a gzip") || strings.HasPrefix(s.binary, "a bzip2") || strings.HasPrefix(s.binary, "an xz") || strings.HasPrefix(s.binary, "a zstd") {
			e.Err, e.Msg = ErrCompressed, compressedHint(p)
		}
	case format == FormatMbox || strings.HasSuffix(lower, ".mbox") || strings.HasSuffix(lower, ".mbx"):
		e.Msg = "not an mbox file (it does not start with a \"From \" line); skipped"
	case startsLikeHeader(s.head):
		e.Msg = "not understood: it looks like one message, but only files named *.eml are read as single messages (rename it to .eml to import it); skipped"
	default:
		e.Msg = "not mail (neither an mbox file nor an .eml file); skipped"
	}
	return e
}

func isCompressedName(lower string) bool {
	for _, x := range []string{".gz", ".bz2", ".xz", ".zst"} {
		if strings.HasSuffix(lower, x) {
			return true
		}
	}
	return false
}

// isNoise reports whether a file or folder is known to belong to a mail
// program (an index, a summary, a state file): skipped without a word.
func isNoise(name string, dir bool) bool {
	lower := strings.ToLower(name)
	if dir {
		switch lower {
		case ".imap", // Dovecot's index folder beside mbox files
			".offlineimap", ".notmuch", ".git", ".mbsync",
			"courierimapkeywords", "courierimaphieracl", "courierimapacl",
			".ds_store", "__macosx", "sieve", ".dovecot.sieve.d", ".spotlight-v100", ".fseventsd", ".trashes", ".temporaryitems":
			return true
		}
		return false
	}
	switch lower {
	case "readme", "readme.txt", "archive_browser.html", "msgfilterrules.dat", "popstate.dat", "filterlog.html",
		"info.plist", "table_of_contents", ".dovecot.sieve", ".dovecot.svbin", ".dovecot.lda-dupes", ".dovecot.lda-dupes.lock", ".ds_store", "thumbs.db", "desktop.ini", "folders.db", "folders.db-journal",
		"subscriptions", "maildirfolder", ".uidvalidity", ".mbsyncstate", ".mbsyncstate.journal", ".mbsyncstate.new",
		".mbsyncstate.lock", ".isyncuidmap.db", "dovecot-uidlist", "dovecot-keywords", "dovecot-uidvalidity",
		"courierimapuiddb", "courierimapsubscribed", "courierpop3dsizelist", "maildirsize",
		".subscriptions", "cmeta", ".cmeta", ".ev-summary", ".ev-summary-meta", ".ibex.index", ".ibex.index.data",
		".index", ".index.ids", ".index.sorted":
		return true
	}
	for _, suffix := range []string{".msf", ".json", ".html", ".dat", ".cmeta", ".ev-summary", ".ev-summary-meta", ".ibex.index", ".ibex.index.data", ".index", ".index.ids", ".index.sorted", ".plist"} {
		if strings.HasSuffix(lower, suffix) {
			return true
		}
	}
	for _, prefix := range []string{"dovecot.index", "dovecot.list.index", "dovecot-uidvalidity.", "dovecot.mailbox.log", ".mbsyncstate", "courierimap", "dovecot-uidlist.lock", "dovecot-keywords."} {
		if strings.HasPrefix(lower, prefix) {
			return true
		}
	}
	return false
}

// isMaildirNoise: files a Maildir program keeps beside cur/ new/ tmp/.
func isMaildirNoise(name string) bool {
	return isNoise(name, false) || strings.HasPrefix(name, ".")
}

// startsLikeHeader reports whether b starts with a header field line
// ("Name: value").
func startsLikeHeader(b []byte) bool {
	line, _, _ := strings.Cut(string(b), "\n")
	name, _, ok := strings.Cut(line, ":")
	if !ok || name == "" {
		return false
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
