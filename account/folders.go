package account

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailmove/mailmove/message"
)

// Folder is a mailbox on the server.
type Folder struct {
	// Name is the server's name, decoded from modified UTF-7.
	Name string
	// Segments is Name split at the server's delimiter.
	Segments []string
	// Delim is the server's hierarchy delimiter (0 for a flat namespace).
	Delim rune
	// Attrs are the LIST attributes (\Noselect, \Sent, \All, ...).
	Attrs []imap.MailboxAttr
	// Status is filled by Status or LIST-STATUS; nil until then.
	Status *imap.StatusData
}

// Path returns the folder path with "/" between segments.
func (f *Folder) Path() string { return strings.Join(f.Segments, "/") }

// Has reports whether the folder has attribute a.
func (f *Folder) Has(a imap.MailboxAttr) bool {
	for _, x := range f.Attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

// Selectable reports whether the folder can hold messages.
func (f *Folder) Selectable() bool {
	return !f.Has(imap.MailboxAttrNoSelect) && !f.Has(imap.MailboxAttrNonExistent)
}

// SplitName splits a mailbox name at delim.
func SplitName(name string, delim rune) []string {
	if delim == 0 {
		return []string{name}
	}
	return strings.Split(name, string(delim))
}

// ListFolders lists every folder, with STATUS (messages, UIDNEXT,
// UIDVALIDITY, and size where the server has STATUS=SIZE) for the
// selectable ones: in the LIST itself where the server has LIST-STATUS,
// else with pipelined STATUS commands.
func (c *Conn) ListFolders() ([]*Folder, error) {
	caps := c.Caps()
	so := &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true}
	if caps.Has(imap.CapStatusSize) {
		so.Size = true
	}
	if caps.Has(imap.CapCondStore) {
		so.HighestModSeq = true // lets a flags refresh skip unchanged folders
	}
	lo := &imap.ListOptions{}
	if caps.Has(imap.CapSpecialUse) {
		lo.ReturnSpecialUse = true
	}
	if caps.Has(imap.CapListStatus) {
		lo.ReturnStatus = so
	}
	list, err := c.List("", "*", lo).Collect()
	if err != nil {
		return nil, fmt.Errorf("LIST: %w", err)
	}
	var out []*Folder
	var pending []*Folder
	var cmds []*imapclient.StatusCommand
	for _, l := range list {
		f := &Folder{Name: l.Mailbox, Delim: l.Delim, Attrs: l.Attrs, Status: l.Status}
		if strings.EqualFold(f.Name, "INBOX") {
			f.Name = "INBOX"
		}
		f.Segments = SplitName(f.Name, f.Delim)
		out = append(out, f)
		if f.Selectable() && f.Status == nil {
			pending = append(pending, f)
			cmds = append(cmds, c.Status(f.Name, so))
		}
	}
	var firstErr error
	for i, cmd := range cmds {
		sd, err := cmd.Wait()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("STATUS %q: %w", pending[i].Name, err)
			}
			continue
		}
		pending[i].Status = sd
	}
	return out, firstErr
}

// Examine opens a folder read-only (EXAMINE): nothing on the server changes.
func (c *Conn) Examine(name string) (*imap.SelectData, error) {
	sd, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, fmt.Errorf("EXAMINE %q: %w", name, err)
	}
	return sd, nil
}

// UIDsAbove returns the UIDs in the open folder greater than after, sorted.
func (c *Conn) UIDsAbove(after uint32) ([]uint32, error) {
	var set imap.UIDSet
	set.AddRange(imap.UID(after+1), 0)
	var all []imap.UID
	sd, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
	if err == nil {
		all = sd.AllUIDs()
	} else {
		var ie *imap.Error
		if !errors.As(err, &ie) {
			return nil, fmt.Errorf("UID SEARCH: %w", err)
		}
		// Some servers (gluon, so Proton Mail Bridge) answer NO when no
		// message matches; ask with UID FETCH instead.
		msgs, ferr := c.Fetch(set, &imap.FetchOptions{UID: true}).Collect()
		if ferr != nil {
			if errors.As(ferr, &ie) {
				return nil, nil
			}
			return nil, fmt.Errorf("UID FETCH (UID): %w", ferr)
		}
		for _, m := range msgs {
			all = append(all, m.UID)
		}
	}
	var out []uint32
	for _, u := range all {
		if uint32(u) > after { // "n:*" also matches the last UID when it is below n
			out = append(out, uint32(u))
		}
	}
	sortUint32(out)
	return out, nil
}

// UIDsIn returns those of uids that are still in the open folder, sorted.
func (c *Conn) UIDsIn(uids []uint32) ([]uint32, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	set := UIDSet(uids)
	var found []imap.UID
	sd, err := c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil).Wait()
	if err == nil {
		found = sd.AllUIDs()
	} else {
		var ie *imap.Error
		if !errors.As(err, &ie) {
			return nil, fmt.Errorf("UID SEARCH: %w", err)
		}
		// gluon answers NO when no message matches: ask with UID FETCH
		msgs, ferr := c.Fetch(set, &imap.FetchOptions{UID: true}).Collect()
		if ferr != nil {
			if errors.As(ferr, &ie) {
				return nil, nil
			}
			return nil, fmt.Errorf("UID FETCH (UID): %w", ferr)
		}
		for _, m := range msgs {
			found = append(found, m.UID)
		}
	}
	want := map[uint32]bool{}
	for _, u := range uids {
		want[u] = true
	}
	var out []uint32
	for _, u := range found {
		if want[uint32(u)] {
			out = append(out, uint32(u))
		}
	}
	sortUint32(out)
	return out, nil
}

// Meta is what a metadata FETCH returns for one message.
type Meta struct {
	// Seq is the message's sequence number when the metadata was fetched.
	Seq          uint32
	UID          uint32
	Flags        []string
	InternalDate time.Time
	Size         int64
}

// UIDSet makes an IMAP UID set of uids.
func UIDSet(uids []uint32) imap.UIDSet {
	var set imap.UIDSet
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		set.AddRange(imap.UID(uids[i]), imap.UID(uids[j]))
		i = j + 1
	}
	return set
}

// FetchMeta fetches UID, FLAGS, INTERNALDATE and RFC822.SIZE of uids in the
// open folder. Messages the server did not return are simply absent.
func (c *Conn) FetchMeta(uids []uint32) (map[uint32]*Meta, error) {
	out := make(map[uint32]*Meta, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	fc := c.Fetch(UIDSet(uids), &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true})
	err := eachMessage(fc, func(buf *imapclient.FetchMessageBuffer) {
		if buf.UID == 0 {
			return
		}
		md := &Meta{Seq: buf.SeqNum, UID: uint32(buf.UID), InternalDate: buf.InternalDate, Size: buf.RFC822Size}
		for _, f := range buf.Flags {
			if strings.EqualFold(string(f), `\Recent`) {
				continue
			}
			md.Flags = append(md.Flags, string(f))
		}
		out[md.UID] = md
	})
	if err != nil {
		return nil, fmt.Errorf("UID FETCH (FLAGS INTERNALDATE RFC822.SIZE): %w", err)
	}
	return out, nil
}

// eachMessage collects the messages of a small FETCH one by one (no bodies:
// a message's items are held in memory) and closes the command.
func eachMessage(fc *imapclient.FetchCommand, fn func(*imapclient.FetchMessageBuffer)) error {
	for m := fc.Next(); m != nil; m = fc.Next() {
		buf, err := m.Collect()
		if err != nil {
			fc.Close()
			return err
		}
		fn(buf)
	}
	return fc.Close()
}

// ErrShortLiteral is returned when a message body ended before the length the
// server announced: the connection dropped in the middle of a message.
var ErrShortLiteral = errors.New("the message ended before its announced length (connection dropped?)")

// BodyFunc receives one message body. It must read r to the end and return
// what it did with it; the literal's length is checked after it returns.
type BodyFunc func(uid uint32, r io.Reader, size int64) error

// FetchBodies streams BODY.PEEK[] of uids (never setting \Seen) to fn, in
// server order. It returns the UIDs that were delivered whole, and an error
// when the command or the connection failed. fn's own errors stop the fetch.
func (c *Conn) FetchBodies(uids []uint32, fn BodyFunc) (done map[uint32]bool, err error) {
	if len(uids) == 0 {
		return map[uint32]bool{}, nil
	}
	return c.fetchBodies(UIDSet(uids), nil, fn)
}

// FetchBodiesBySeq is FetchBodies by sequence number (seq -> UID, from
// FetchMeta). go-imap matches the answers to a UID FETCH by the UID, and
// drops a message whose UID comes after its body, which some servers send;
// by sequence number it is matched by the "* n FETCH" that starts it.
func (c *Conn) FetchBodiesBySeq(seqs map[uint32]uint32, fn BodyFunc) (done map[uint32]bool, err error) {
	if len(seqs) == 0 {
		return map[uint32]bool{}, nil
	}
	var set imap.SeqSet
	for s := range seqs {
		set.AddNum(s)
	}
	return c.fetchBodies(set, seqs, fn)
}

func (c *Conn) fetchBodies(set imap.NumSet, bySeq map[uint32]uint32, fn BodyFunc) (done map[uint32]bool, err error) {
	done = map[uint32]bool{}
	section := &imap.FetchItemBodySection{Peek: true}
	fc := c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	var fnErr error
messages:
	for fnErr == nil {
		m := fc.Next()
		if m == nil {
			break
		}
		var uid uint32
		if bySeq != nil {
			uid = bySeq[m.SeqNum]
		}
		for {
			it := m.Next()
			if it == nil {
				break
			}
			switch it := it.(type) {
			case imapclient.FetchItemDataUID:
				if bySeq != nil && uid != uint32(it.UID) {
					uid = 0 // the folder changed under us: do not guess
				} else {
					uid = uint32(it.UID)
				}
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil || uid == 0 {
					// NIL body, or a server that sent the literal before the UID:
					// the message is not done and will be asked for again.
					if it.Literal != nil {
						io.Copy(io.Discard, it.Literal)
					}
					continue
				}
				er := &exactReader{r: it.Literal, size: it.Literal.Size(), uid: uid}
				e := fn(uid, er, it.Literal.Size())
				if e == nil {
					io.Copy(io.Discard, er) // fn should have read it all
					if er.n != er.size {
						e = fmt.Errorf("UID %d: got %d of %d bytes: %w", uid, er.n, er.size, ErrShortLiteral)
					}
				}
				if e != nil {
					var re *ReadError
					if errors.As(e, &re) || errors.Is(e, ErrShortLiteral) {
						err = e
					} else {
						fnErr = e
					}
					break messages
				}
				done[uid] = true
			}
		}
	}
	cerr := fc.Close()
	if fnErr != nil {
		return done, fnErr
	}
	if err == nil && cerr != nil {
		err = fmt.Errorf("FETCH BODY.PEEK[]: %w", cerr)
	}
	return done, err
}

// FetchHeaderField returns, for every message of the open folder, the value
// of one header field (for Bridge: X-Pm-Internal-Id), keyed by UID.
func (c *Conn) FetchHeaderField(field string) (map[uint32]string, error) {
	var all imap.UIDSet
	all.AddRange(1, 0)
	return c.fetchHeaderField(field, all)
}

// FetchHeaderFieldOf is FetchHeaderField for the given UIDs only. A UID the
// server did not answer for is absent from the map: the caller accounts
// for it.
func (c *Conn) FetchHeaderFieldOf(field string, uids []uint32) (map[uint32]string, error) {
	if len(uids) == 0 {
		return map[uint32]string{}, nil
	}
	return c.fetchHeaderField(field, UIDSet(uids))
}

func (c *Conn) fetchHeaderField(field string, all imap.UIDSet) (map[uint32]string, error) {
	section := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{field}}
	fc := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{section}})
	out := map[uint32]string{}
	err := eachMessage(fc, func(buf *imapclient.FetchMessageBuffer) {
		var v []byte
		for _, bs := range buf.BodySection {
			v = bs.Bytes
		}
		if buf.UID != 0 {
			out[uint32(buf.UID)] = headerValue(string(v), field)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("UID FETCH BODY.PEEK[HEADER.FIELDS (%s)]: %w", field, err)
	}
	return out, nil
}

func headerValue(h, field string) string {
	var val string
	found := false
	for _, line := range strings.Split(strings.ReplaceAll(h, "\r\n", "\n"), "\n") {
		if found && line != "" && (line[0] == ' ' || line[0] == '\t') {
			val += " " + strings.TrimSpace(line)
			continue
		}
		if found {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), field) {
			val, found = strings.TrimSpace(v), true
		}
	}
	return val
}

// ReadError is a failure to read a message from the server (as opposed to
// a failure to store it).
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "reading from the server: " + e.Err.Error() }
func (e *ReadError) Unwrap() error { return e.Err }

// exactReader reads a literal and fails, instead of ending quietly, when the
// connection drops before the announced size: go-imap's literal reader
// returns a short read without an error in that case.
type exactReader struct {
	r    io.Reader
	n    int64
	size int64
	uid  uint32
}

func (c *exactReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err == io.EOF && c.n < c.size {
		return n, &ReadError{Err: fmt.Errorf("UID %d: got %d of %d bytes: %w", c.uid, c.n, c.size, ErrShortLiteral)}
	}
	if err != nil && err != io.EOF {
		return n, &ReadError{Err: err}
	}
	return n, err
}

func sortUint32(a []uint32) {
	// insertion sort is fine for already sorted input (SEARCH results are)
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// TotalSize returns the number of messages and the sum of their RFC822.SIZE
// in a folder, for servers without STATUS=SIZE. It opens the folder
// read-only.
func (c *Conn) TotalSize(name string) (uint32, int64, error) {
	sel, err := c.Examine(name)
	if err != nil {
		return 0, 0, err
	}
	if sel.NumMessages == 0 {
		return 0, 0, nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	var n uint32
	var total int64
	err = eachMessage(c.Fetch(all, &imap.FetchOptions{RFC822Size: true}), func(buf *imapclient.FetchMessageBuffer) {
		n++
		total += buf.RFC822Size
	})
	if err != nil {
		return 0, 0, fmt.Errorf("FETCH RFC822.SIZE in %q: %w", name, err)
	}
	return n, total, nil
}

// FetchFlags returns the flags (without \Recent) of the messages of the
// open folder with UIDs 1 to last.
func (c *Conn) FetchFlags(last uint32) (map[uint32][]string, error) {
	out := map[uint32][]string{}
	var set imap.UIDSet
	set.AddRange(1, imap.UID(last))
	err := eachMessage(c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true}), func(buf *imapclient.FetchMessageBuffer) {
		flags := []string{}
		for _, f := range buf.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				flags = append(flags, string(f))
			}
		}
		out[uint32(buf.UID)] = flags
	})
	if err != nil {
		return nil, fmt.Errorf("UID FETCH (FLAGS): %w", err)
	}
	return out, nil
}

// WaitSettled waits until mailbox's message count has not moved for two
// seconds (at most 30 s), or ctx ends: after an interrupted append run the
// server may still be saving what that run sent, and counting what the
// folder holds before then would append it twice.
func (c *Conn) WaitSettled(ctx context.Context, mailbox string) {
	count := func() int64 {
		sd, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || sd.NumMessages == nil {
			return -1
		}
		return int64(*sd.NumMessages)
	}
	deadline := time.Now().Add(30 * time.Second)
	last, still := count(), 0
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		n := count()
		if n != last {
			last, still = n, 0
			continue
		}
		if still++; still == 2 {
			return // unchanged for two seconds
		}
	}
}

// IsIMAPError reports whether err is the server's answer (NO or BAD) to a
// command: the connection is still good.
func IsIMAPError(err error) bool {
	var ie *imap.Error
	return errors.As(err, &ie)
}

// HeaderIDs returns the Message-ID (without <>) and Proton's
// X-Pm-Internal-Id of a message header.
func HeaderIDs(hdr []byte) (id, pm string) {
	h := string(hdr)
	if !strings.HasSuffix(h, "\r\n\r\n") && !strings.HasSuffix(h, "\n\n") {
		h += "\r\n\r\n"
	}
	id, pm, _ = message.HeaderFields(bufio.NewReader(strings.NewReader(h)))
	return id, pm
}

// BodyHashes returns the SHA-256 of the bytes (BODY.PEEK[], streamed,
// each literal's length checked) of uids in the selected folder; a UID
// the server did not send is absent.
func (c *Conn) BodyHashes(uids []uint32) (map[uint32]string, error) {
	out := map[uint32]string{}
	_, err := c.FetchBodies(uids, func(uid uint32, r io.Reader, size int64) error {
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			return &ReadError{Err: err}
		}
		out[uid] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	return out, err
}

// FetchHeaderFields returns the named header fields (BODY.PEEK[HEADER.FIELDS
// (...)], as the server sends them) of uids in the selected folder.
func (c *Conn) FetchHeaderFields(uids []uint32, fields ...string) (map[uint32][]byte, error) {
	out := map[uint32][]byte{}
	if len(uids) == 0 {
		return out, nil
	}
	sec := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader, HeaderFields: fields}
	fc := c.Fetch(UIDSet(uids), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}})
	err := eachMessage(fc, func(buf *imapclient.FetchMessageBuffer) {
		for _, bs := range buf.BodySection {
			if buf.UID != 0 {
				out[uint32(buf.UID)] = bs.Bytes
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("UID FETCH BODY.PEEK[HEADER.FIELDS (%s)]: %w", strings.Join(fields, " "), err)
	}
	return out, nil
}

// HeaderHashes returns the SHA-256 of the header (BODY.PEEK[HEADER]) of
// uids in the selected folder.
func (c *Conn) HeaderHashes(uids []uint32) (map[uint32]string, error) {
	out := map[uint32]string{}
	sec := &imap.FetchItemBodySection{Peek: true, Specifier: imap.PartSpecifierHeader}
	fc := c.Fetch(UIDSet(uids), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{sec}})
	for m := fc.Next(); m != nil; m = fc.Next() {
		var uid uint32
		for it := m.Next(); it != nil; it = m.Next() {
			switch it := it.(type) {
			case imapclient.FetchItemDataUID:
				uid = uint32(it.UID)
			case imapclient.FetchItemDataBodySection:
				if it.Literal == nil {
					continue
				}
				h := sha256.New()
				if _, err := io.Copy(h, it.Literal); err != nil {
					fc.Close()
					return nil, err
				}
				if uid != 0 {
					out[uid] = hex.EncodeToString(h.Sum(nil))
				}
			}
		}
	}
	if err := fc.Close(); err != nil {
		return nil, fmt.Errorf("UID FETCH BODY.PEEK[HEADER]: %w", err)
	}
	return out, nil
}
