package imports

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mailmove/mailmove/message"
)

// isMaildir reports whether p is a Maildir: a folder with cur/ or new/.
// (Dovecot and mbsync make all three, but an old tree may have lost an
// empty one.)
func isMaildir(p string) bool {
	for _, d := range []string{"cur", "new"} {
		if fi, err := os.Lstat(filepath.Join(p, d)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

// maildirMeta is what a Maildir's own metadata files say about its
// messages: Dovecot's keyword letters, Courier's keywords, Dovecot's UIDs.
type maildirMeta struct {
	letters map[byte]string     // dovecot-keywords: 'a' -> "$Work"
	courier map[string][]string // courierimapkeywords: unique name -> keywords
	uids    map[string]uint64   // dovecot-uidlist: unique name -> UID
}

// readMaildirMeta reads dovecot-keywords, dovecot-uidlist and
// courierimapkeywords/ of the Maildir dir. What cannot be read is left out
// (the messages are still imported, and reported when a keyword letter has
// no name).
func readMaildirMeta(dir string) *maildirMeta {
	m := &maildirMeta{letters: map[byte]string{}, courier: map[string][]string{}, uids: map[string]uint64{}}
	if f, _, err := openRegular(filepath.Join(dir, "dovecot-keywords")); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			n, name, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			i, err := strconv.Atoi(n)
			if ok && err == nil && i >= 0 && i < 26 && name != "" {
				m.letters['a'+byte(i)] = name
			}
		}
		f.Close()
	}
	if f, _, err := openRegular(filepath.Join(dir, "dovecot-uidlist")); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		first := true
		for sc.Scan() {
			l := sc.Text()
			if first {
				first = false
				continue // the header: version, UIDVALIDITY, next UID
			}
			uid, rest, ok := strings.Cut(l, " ")
			_, name, ok2 := strings.Cut(rest, ":")
			if n, err := strconv.ParseUint(uid, 10, 64); ok && ok2 && err == nil {
				m.uids[name] = n
			}
		}
		f.Close()
	}
	m.readCourier(filepath.Join(dir, "courierimapkeywords"))
	return m
}

// readCourier reads Courier's keywords (README.imapkeywords): the file
// ":list" holds the keywords, one a line, an empty line, then
// "uniquename:0 3" lines (indexes into that list); files
// ".N.uniquename" are later updates, one keyword a line, the highest N
// winning.
func (m *maildirMeta) readCourier(kwdir string) {
	if f, _, err := openRegular(filepath.Join(kwdir, ":list")); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var names []string
		head := true
		for sc.Scan() {
			l := strings.TrimRight(sc.Text(), "\r")
			if head {
				if l == "" {
					head = false
					continue
				}
				names = append(names, l)
				continue
			}
			msg, idx, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			var kws []string
			for _, s := range strings.Fields(idx) {
				if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < len(names) {
					kws = append(kws, names[i])
				}
			}
			m.courier[msg] = kws
		}
		f.Close()
	}
	entries, err := os.ReadDir(kwdir)
	if err != nil {
		return
	}
	best := map[string]int64{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		n, msg, ok := strings.Cut(name[1:], ".")
		gen, err := strconv.ParseInt(n, 10, 64)
		if !ok || err != nil || msg == "" {
			continue
		}
		if g, seen := best[msg]; seen && g > gen {
			continue
		}
		b, err := os.ReadFile(filepath.Join(kwdir, name))
		if err != nil {
			continue
		}
		best[msg] = gen
		m.courier[msg] = strings.Fields(string(b))
	}
}

// scanMaildir reads one Maildir: new/ and cur/ (flags from the ":2,"
// suffix, Dovecot's keyword letters, Courier's keywords), in the order of
// Dovecot's UIDs where it kept them; dates are the files' modification
// times (Dovecot and Courier set them to the arrival date; deliveries leave
// the time of delivery), but the Date header for files that mbsync or
// offlineimap copied (named with ",U="), which carry the time of the copy.
// Files left in tmp/ are reported, not imported. Symbolic links are
// followed only to files inside root, the source.
func scanMaildir(root, dir, folder string, fn func(*Item) error, bad func(error)) error {
	meta := readMaildirMeta(dir)
	type entry struct {
		sub, name string
		fi        fs.FileInfo
	}
	var list []entry
	for _, sub := range []string{"new", "cur", "tmp"} {
		p := filepath.Join(dir, sub)
		entries, err := os.ReadDir(p)
		if err != nil {
			if !os.IsNotExist(err) {
				bad(fileError(p, folder, err))
			}
			continue
		}
		for _, e := range entries {
			name := e.Name()
			fp := filepath.Join(p, name)
			if sub == "tmp" {
				if e.Type().IsRegular() && !strings.HasPrefix(name, ".") {
					bad(&InputError{File: fp, Folder: folder, Err: ErrUnfinished,
						Msg: "left in the Maildir's tmp/ (a delivery that never finished); not imported: if it is a whole message, move it to new/ and run the import again"})
				}
				continue
			}
			if strings.HasPrefix(name, ".") {
				continue // a program's temporary or hidden file, not a message
			}
			var fi fs.FileInfo
			switch t := e.Type(); {
			case t&fs.ModeSymlink != 0:
				lfi, err := statLink(root, fp)
				if err != nil {
					bad(fileError(fp, folder, err))
					continue
				}
				fi = lfi
			case t.IsDir():
				bad(&InputError{File: fp, Folder: folder, Err: ErrNotMail, Msg: "a folder inside a Maildir's " + sub + "/, where only messages belong; skipped"})
				continue
			case !t.IsRegular():
				bad(fileError(fp, folder, fmt.Errorf("%w (%s)", ErrNotRegular, fileKind(t))))
				continue
			}
			list = append(list, entry{sub, name, fi})
		}
	}
	uniq := func(name string) string {
		if i := strings.IndexByte(name, ':'); i >= 0 {
			return name[:i]
		}
		return name
	}
	sort.SliceStable(list, func(i, j int) bool {
		ui, oki := meta.uids[uniq(list[i].name)]
		uj, okj := meta.uids[uniq(list[j].name)]
		switch {
		case oki && okj:
			return ui < uj
		case oki != okj:
			return oki
		}
		return list[i].name < list[j].name
	})
	for _, e := range list {
		p := filepath.Join(dir, e.sub, e.name)
		f, fi, err := openRegular(p)
		if err != nil {
			bad(fileError(p, folder, err))
			continue
		}
		hdr, err := readHeader(f)
		f.Close()
		if err != nil {
			bad(&InputError{File: p, Folder: folder, Msg: err.Error(), Err: err})
			continue
		}
		if fi.Size() > maxMessageSize {
			bad(&InputError{File: p, Folder: folder, Msg: errTooBig.Error(), Err: errTooBig})
			continue
		}
		h := parseHeader(hdr)
		m := message.Meta{Folder: folder, Size: fi.Size(), MessageID: h.messageID, InternalDate: fi.ModTime()}
		if strings.Contains(e.name, ",U=") && !h.date.IsZero() {
			// mbsync and offlineimap (",U=uid" in the name) leave the time
			// of the copy on the file, not the server's arrival date: the
			// Date header is nearer to it
			m.InternalDate = h.date
		}
		flags := maildirFlags(e.sub, e.name, meta.letters)
		if flags == nil {
			flags = h.flags()
		}
		if kws, ok := meta.courier[uniq(e.name)]; ok {
			flags = append(flags, kws...)
		}
		m.Flags = flags
		path := p
		open := func() (io.ReadCloser, error) { return openMessageFile(path) }
		if strings.Contains(e.name, ",U=") && !strings.Contains(e.name, ",FMD5=") {
			// mbsync adds X-TUID (its own tracking) to what it copies
			open = func() (io.ReadCloser, error) {
				r, err := openMessageFile(path)
				if err != nil {
					return nil, err
				}
				return dropFields(r, "X-TUID"), nil
			}
		}
		it := &Item{Meta: m, Source: p, ID: filepath.Join(dir, uniq(e.name)), open: open}
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

// readHeader reads a message's header (at most maxHeaderBytes of it).
func readHeader(r io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr []byte
	for len(hdr) < maxHeaderBytes {
		line, err := br.ReadSlice('\n')
		hdr = append(hdr, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(strings.TrimRight(string(line), "\r\n")) == 0 {
			break
		}
	}
	return hdr, nil
}

// maildirFlags reads the ":2,FLAGS" suffix: the standard letters, and
// Dovecot's keyword letters a..z (named in dovecot-keywords; a letter it
// does not name is left out: it has no name to give). The flags are nil when the name has no
// suffix in cur/ (the message's own Status headers are used then), empty
// in new/ (not yet seen).
func maildirFlags(sub, name string, letters map[byte]string) []string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		if sub == "new" {
			return []string{}
		}
		return nil
	}
	flags := []string{}
	for _, c := range []byte(name[i+3:]) {
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
		default:
			if c >= 'a' && c <= 'z' {
				if k, ok := letters[c]; ok {
					flags = append(flags, k)
				}
			}
		}
	}
	return flags
}
