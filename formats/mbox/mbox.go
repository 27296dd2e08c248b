// Package mbox reads and writes mbox files in the mboxrd dialect (RFC 4155 with
// reversible From quoting), byte for byte.
//
// Writing: every message starts with a From_ line
//
//	From <envelope sender or MAILER-DAEMON> <asctime date in UTC>
//
// followed by the message, in which every line matching ^>*From  gets one more
// '>', then an end of line if the message did not end with one, then one empty
// line. Line endings are kept as given (IMAP delivers CRLF) unless the Writer
// is asked for LF, in which case CRLF pairs are turned into LF.
//
// Reading: a From_ line at the start of the file (after empty lines at most)
// or after an empty line starts
// a message; the empty line before it (or before the end of the file) is not
// part of the message; one '>' is removed from every line matching ^>+From .
// This reads mboxrd exactly, and mboxo (Python's mailbox, older Thunderbird,
// mutt) as well as mboxo can be read: in mboxo a body line that was ">From "
// before it was written cannot be told apart from an escaped "From ", and comes
// back as "From ". Both CRLF and LF files are read; the bytes come back with
// the line endings of the file.
//
// A message that did not end with a line ending gains one in an mbox file; a
// reader that knows the original size (mailmove's index does) can trim it.
package mbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// DateLayout is the asctime layout of the date in a From_ line.
const DateLayout = "Mon Jan _2 15:04:05 2006"

// FromLine returns the From_ line (without its line ending) for a message
// from sender received at date. An empty sender or one that contains white
// space becomes MAILER-DAEMON, so that the line stays parseable.
func FromLine(sender string, date time.Time) string {
	if sender == "" || strings.ContainsAny(sender, " \t\r\n") {
		sender = "MAILER-DAEMON"
	}
	if date.IsZero() {
		date = time.Unix(0, 0)
	}
	return "From " + sender + " " + date.UTC().Format(DateLayout)
}

// ParseFromLine splits a From_ line (with or without its line ending) into
// the envelope sender and the date. It accepts asctime dates, dates with a
// numeric zone before the year (Gmail Takeout) and after it (mutt). A date
// that cannot be parsed comes back as the zero time, without an error: the
// line still separates messages.
func ParseFromLine(line string) (sender string, date time.Time, err error) {
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "From ") {
		return "", time.Time{}, errors.New("mbox: not a From_ line")
	}
	rest := strings.TrimLeft(line[5:], " ")
	sender, rest, _ = strings.Cut(rest, " ")
	rest = strings.Join(strings.Fields(rest), " ")
	for _, layout := range []string{
		"Mon Jan 2 15:04:05 2006",
		"Mon Jan 2 15:04:05 -0700 2006",
		"Mon Jan 2 15:04:05 2006 -0700",
		"Mon Jan 2 15:04:05 MST 2006",
		"Mon Jan 2 15:04 2006",
	} {
		if t, e := time.Parse(layout, rest); e == nil {
			return sender, t, nil
		}
	}
	return sender, time.Time{}, nil
}

// Writer appends messages to an mbox file.
type Writer struct {
	w  io.Writer
	lf bool
}

// NewWriter returns a Writer that appends to w. With lf set, CRLF line
// endings in messages are written as LF (and the From_ line and separator
// use LF); otherwise line endings are kept and the From_ line and the empty
// line after each message use CRLF.
func NewWriter(w io.Writer, lf bool) *Writer {
	return &Writer{w: w, lf: lf}
}

// WriteMessage writes one message: its From_ line, the quoted bytes read
// from r until EOF, a line ending if r's last byte was not '\n', and an
// empty line. It streams: memory use does not depend on the message size.
// It returns the number of bytes written to the file.
func (mw *Writer) WriteMessage(sender string, date time.Time, r io.Reader) (int64, error) {
	w, err := mw.WriteMessageInfo(sender, date, r)
	return w.Bytes, err
}

// Written is what WriteMessageInfo wrote.
type Written struct {
	// Bytes is the number of bytes written to the file.
	Bytes int64
	// RawFrom is -1 when every line ending of the message was CRLF (or the
	// Writer keeps line endings). In an LF Writer, a message with a bare LF
	// (an LF without CR before it) cannot be given back exactly if its LFs
	// are all read back as CRLF: from the offset RawFrom (in the message as
	// read from r) on, where the first bare LF is, the bytes are written
	// as they are. ToCRLF undoes exactly this.
	RawFrom int64
}

// WriteMessageInfo is WriteMessage, and says where an LF Writer stopped
// converting line endings (see Written).
func (mw *Writer) WriteMessageInfo(sender string, date time.Time, r io.Reader) (Written, error) {
	eol := "\r\n"
	if mw.lf {
		eol = "\n"
	}
	cw := &countWriter{w: mw.w}
	res := Written{RawFrom: -1}
	if _, err := io.WriteString(cw, FromLine(sender, date)+eol); err != nil {
		res.Bytes = cw.n
		return res, err
	}
	q := &quoter{w: cw, lf: mw.lf, lineStart: true, rawFrom: -1}
	_, err := io.Copy(q, r)
	if err == nil {
		err = q.flush()
	}
	if err == nil {
		tail := eol
		if !q.lineStart {
			tail = eol + eol
		}
		_, err = io.WriteString(cw, tail)
	}
	res.Bytes, res.RawFrom = cw.n, q.rawFrom
	return res, err
}

// ToCRLF gives back the bytes of a message that an LF Writer wrote: every
// LF becomes CRLF (a CR that was before a CRLF stays: CR CR LF was written
// CR LF), up to offset rawFrom of the result, where the bytes were written
// as they are (rawFrom < 0: to the end). It streams.
func ToCRLF(r io.Reader, rawFrom int64) io.Reader {
	return &crlfReader{r: r, rawFrom: rawFrom}
}

type crlfReader struct {
	r       io.Reader
	rawFrom int64
	pos     int64 // bytes given out
	buf     []byte
	pending []byte // bytes of buf not yet converted and given out
	lfOwed  bool   // the CR of a CRLF was given out, its LF not yet
	err     error
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := 0
	for n < len(p) {
		if c.lfOwed {
			p[n] = '\n'
			n++
			c.pos++
			c.lfOwed = false
			continue
		}
		if len(c.pending) == 0 {
			if n > 0 || c.err != nil {
				break
			}
			if c.buf == nil {
				c.buf = make([]byte, 32<<10)
			}
			k, err := c.r.Read(c.buf)
			c.pending, c.err = c.buf[:k], err
			continue
		}
		if c.rawFrom >= 0 && c.pos >= c.rawFrom {
			k := copy(p[n:], c.pending)
			c.pending = c.pending[k:]
			n += k
			c.pos += int64(k)
			continue
		}
		// convert up to the next LF, not past rawFrom
		chunk := c.pending
		if c.rawFrom >= 0 && int64(len(chunk)) > c.rawFrom-c.pos {
			chunk = chunk[:c.rawFrom-c.pos]
		}
		if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
			chunk = chunk[:i+1]
		}
		if chunk[len(chunk)-1] == '\n' {
			// copy the line, then CR LF
			body := chunk[:len(chunk)-1]
			k := copy(p[n:], body)
			n += k
			c.pos += int64(k)
			c.pending = c.pending[k:]
			if k < len(body) || n == len(p) {
				continue
			}
			p[n] = '\r'
			n++
			c.pos++
			c.pending = c.pending[1:]
			c.lfOwed = true
			continue
		}
		k := copy(p[n:], chunk)
		n += k
		c.pos += int64(k)
		c.pending = c.pending[k:]
	}
	if n == 0 && c.err != nil {
		return 0, c.err
	}
	return n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var fromPrefix = []byte("From ")

// quoter adds one '>' to every line matching ^>*From  and, with lf, turns
// CRLF into LF. It holds back at most the start of a line until it knows
// whether the line needs quoting.
type quoter struct {
	w         io.Writer
	lf        bool
	lineStart bool   // the next byte starts a line
	held      []byte // start of the current line not yet written (only '>' and a prefix of "From ")
	cr        bool   // lf mode: a '\r' was held back
	in        int64  // input bytes passed on (held ones not yet)
	rawFrom   int64  // lf mode: input offset of the first bare LF, from which bytes are kept as they are; -1 if none
	spare     [16]byte
}

// The one-byte writes of the quoter, allocated once (a literal passed to
// an io.Writer would be allocated on every line).
var (
	gtByte = []byte{'>'}
	lfByte = []byte{'\n'}
	crByte = []byte{'\r'}
)

func (q *quoter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if q.lineStart || q.held != nil {
			// Decide the start of a line byte by byte.
			c := p[0]
			q.lineStart = false
			if q.held == nil {
				q.held = q.spare[:0] // not nil: a line start is being held
			}
			gt := 0
			for gt < len(q.held) && q.held[gt] == '>' {
				gt++
			}
			matched := len(q.held) - gt // bytes of "From " matched so far
			switch {
			case matched == 0 && c == '>':
				q.held = append(q.held, c)
				p = p[1:]
				continue
			case c == fromPrefix[matched]:
				q.held = append(q.held, c)
				p = p[1:]
				if matched+1 == len(fromPrefix) {
					if _, err := q.w.Write(gtByte); err != nil {
						return 0, err
					}
					if err := q.flushHeld(); err != nil {
						return 0, err
					}
				}
				continue
			default:
				if err := q.flushHeld(); err != nil {
					return 0, err
				}
			}
		}
		// Body bytes up to and including the next '\n'.
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		if err := q.body(chunk); err != nil {
			return 0, err
		}
		p = p[len(chunk):]
		if i >= 0 {
			q.lineStart = true
		}
	}
	return n, nil
}

func (q *quoter) flushHeld() error {
	h := q.held
	q.held = nil
	if len(h) == 0 {
		return nil
	}
	q.in += int64(len(h))
	_, err := q.w.Write(h)
	return err
}

// body writes bytes that need no quoting, converting CRLF to LF in lf mode
// until the first bare LF. b holds at most one '\n', at its end.
func (q *quoter) body(b []byte) error {
	if !q.lf || q.rawFrom >= 0 {
		q.in += int64(len(b))
		_, err := q.w.Write(b)
		return err
	}
	if q.cr {
		q.cr = false
		if len(b) > 0 && b[0] == '\n' {
			// a CRLF split between two writes
			q.in++
			_, err := q.w.Write(lfByte)
			return err
		}
		if _, err := q.w.Write(crByte); err != nil {
			return err
		}
	}
	n := len(b)
	var err error
	switch {
	case n == 0:
	case b[n-1] == '\r':
		q.cr = true
		_, err = q.w.Write(b[:n-1])
	case b[n-1] == '\n' && n >= 2 && b[n-2] == '\r':
		if _, err = q.w.Write(b[:n-2]); err == nil {
			_, err = q.w.Write(lfByte)
		}
	case b[n-1] == '\n':
		// a bare LF: reading back could not tell it from a converted CRLF,
		// so from here on the message is kept as it is
		q.rawFrom = q.in + int64(n-1)
		_, err = q.w.Write(b)
	default:
		_, err = q.w.Write(b)
	}
	q.in += int64(n)
	return err
}

func (q *quoter) flush() error {
	if err := q.flushHeld(); err != nil {
		return err
	}
	if q.cr {
		q.cr = false
		_, err := q.w.Write(crByte)
		return err
	}
	return nil
}

// Reader reads messages from an mbox file.
type Reader struct {
	// ContentLength says whether Content-Length headers are honoured (see
	// NewReader); set it to false before the first Next to read strict
	// mboxrd, as mailmove does for its own archives.
	ContentLength bool

	br      *bufio.Reader
	rs      io.ReadSeeker // set when the file can seek: Content-Length is checked
	base    int64         // rs's offset when the Reader was made
	pos     int64         // bytes consumed from br
	next    string        // From_ line of the next message, "" before the first
	nextOff int64         // offset of that line
	started bool
	cur     *msgReader
	line    int64 // lines read so far, for error messages
}

// NewReader returns a Reader of the mbox file r.
//
// When r is an io.ReadSeeker (a file), a Content-Length header is honoured
// the way Dovecot does (mboxcl2, as Dovecot and mutt write): the body is
// taken to be exactly that long, unquoted, when a From_ line or the end of
// the file follows it there; otherwise the header is ignored.
func NewReader(r io.Reader) *Reader {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	if rs, ok := r.(io.ReadSeeker); ok {
		if off, err := rs.Seek(0, io.SeekCurrent); err == nil {
			rd.rs, rd.base = rs, off
			rd.ContentLength = true
		}
	}
	return rd
}

// readSlice is bufio's ReadSlice, counting what is consumed.
func (r *Reader) readSlice() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	r.pos += int64(len(b))
	return b, err
}

// contentLengthFits reports whether n bytes from the current position end
// where a message may end: at EOF, or before a From_ line (after an
// optional empty line).
func (r *Reader) contentLengthFits(n int64) bool {
	if r.rs == nil || n < 0 || !r.ContentLength {
		return false
	}
	real, err := r.rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return false
	}
	defer r.rs.Seek(real, io.SeekStart)
	if _, err := r.rs.Seek(r.base+r.pos+n, io.SeekStart); err != nil {
		return false
	}
	var buf [8]byte
	k, _ := io.ReadFull(r.rs, buf[:])
	next := buf[:k]
	switch {
	case k == 0:
		return true
	case bytes.HasPrefix(next, fromPrefix):
		return true
	case bytes.HasPrefix(next, []byte("\nFrom ")), bytes.HasPrefix(next, []byte("\r\nFrom ")):
		return true
	case string(next) == "\n" || string(next) == "\r\n":
		return true
	}
	return false
}

// Message is one message of an mbox file. Read it to EOF (or not: Next skips
// what is left).
type Message struct {
	// Sender is the envelope sender of the From_ line.
	Sender string
	// Date is the date of the From_ line, zero if it could not be parsed.
	Date time.Time
	// FromLine is the From_ line without its line ending.
	FromLine string
	// Line is the line number of the From_ line, from 1.
	Line int64
	// Offset is the byte offset of the From_ line from where the Reader
	// started.
	Offset int64
	io.Reader
}

// ErrNotMbox is returned by Next when the file does not start with a From_ line.
var ErrNotMbox = errors.New("mbox: the file does not start with a \"From \" line; it is not an mbox file")

// Next returns the next message, or io.EOF after the last one.
func (r *Reader) Next() (*Message, error) {
	if r.cur != nil {
		if _, err := io.Copy(io.Discard, r.cur); err != nil {
			return nil, err
		}
	}
	if !r.started {
		r.started = true
		// Empty lines before the first From_ line (some programs write
		// one) belong to no message.
		var line string
		for {
			l, err := r.br.ReadString('\n')
			r.pos += int64(len(l))
			if err != nil && l == "" {
				if err == io.EOF {
					return nil, io.EOF
				}
				return nil, err
			}
			r.line++
			if l == "\n" || l == "\r\n" {
				continue
			}
			line = l
			break
		}
		if !strings.HasPrefix(line, "From ") {
			return nil, ErrNotMbox
		}
		r.next = line
		r.nextOff = r.pos - int64(len(line))
	}
	if r.next == "" {
		return nil, io.EOF
	}
	fl := strings.TrimRight(r.next, "\r\n")
	sender, date, _ := ParseFromLine(fl)
	r.next = ""
	r.cur = &msgReader{r: r, lineStart: true, inHeader: true, counted: -1, length: -1}
	return &Message{Sender: sender, Date: date, FromLine: fl, Line: r.line, Offset: r.nextOff, Reader: r.cur}, nil
}

// msgReader yields the bytes of one message, unquoted.
type msgReader struct {
	r         *Reader
	pending   []byte // bytes ready to return
	blank     []byte // a held empty line that may be the separator
	lineStart bool
	done      bool
	inHeader  bool
	length    int64 // Content-Length seen in the header, -1 if none
	counted   int64 // body bytes left in Content-Length mode, -1 if not in it
	// buf is reused for pending: Read returns pending in full before the
	// next fill, so one buffer serves every line (no allocation per line)
	buf []byte
}

func (m *msgReader) Read(p []byte) (int, error) {
	for len(m.pending) == 0 {
		if m.done {
			return 0, io.EOF
		}
		if err := m.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, m.pending)
	m.pending = m.pending[n:]
	return n, nil
}

// fill reads the next piece of a line into pending.
func (m *msgReader) fill() error {
	br := m.r.br
	if m.counted > 0 {
		n := min(m.counted, 64<<10)
		if int64(cap(m.buf)) < n {
			m.buf = make([]byte, n)
		}
		buf := m.buf[:n]
		k, err := io.ReadFull(br, buf)
		m.r.pos += int64(k)
		m.counted -= int64(k)
		m.pending = buf[:k]
		if err != nil {
			return fmt.Errorf("mbox: message ends before its Content-Length: %w", io.ErrUnexpectedEOF)
		}
		if m.counted == 0 {
			m.counted = -1
			m.lineStart = k > 0 && buf[k-1] == '\n'
		}
		return nil
	}
	chunk, err := m.r.readSlice()
	if err == bufio.ErrBufferFull {
		err = nil
	}
	if len(chunk) == 0 {
		if err == io.EOF {
			m.done = true
			m.blank = nil // an empty line before EOF is the separator
			return nil
		}
		return err
	}
	complete := chunk[len(chunk)-1] == '\n'
	if m.lineStart {
		m.r.line++
		if m.inHeader {
			if isBlank(chunk) {
				m.inHeader = false
				if m.length >= 0 && m.r.contentLengthFits(m.length) {
					// mboxcl2: the end of the header is part of the message,
					// and the body is Content-Length bytes, taken as they are.
					m.pending = append(m.blank, chunk...)
					m.blank = nil
					if m.length > 0 {
						m.counted = m.length
					}
					return nil
				}
			}
			if len(chunk) > 15 && strings.EqualFold(string(chunk[:15]), "Content-Length:") {
				var n int64
				if _, e := fmt.Sscanf(strings.TrimSpace(string(chunk[15:])), "%d", &n); e == nil {
					m.length = n
				}
			}
		}
		if isBlank(chunk) {
			var out []byte
			if m.blank != nil {
				out = append(out, m.blank...)
			}
			m.blank = append([]byte(nil), chunk...)
			m.pending = out
			return nil
		}
		if m.blank != nil && bytes.HasPrefix(chunk, fromPrefix) {
			// the From_ line of the next message; it is complete unless
			// absurdly long.
			line := string(chunk)
			for !complete {
				more, e := m.r.readSlice()
				line += string(more)
				if e != nil && e != bufio.ErrBufferFull {
					break
				}
				complete = len(more) > 0 && more[len(more)-1] == '\n'
			}
			m.r.next = line
			m.r.nextOff = m.r.pos - int64(len(line))
			m.blank = nil
			m.done = true
			return nil
		}
		out := append(m.buf[:0], m.blank...)
		m.blank = nil
		// unquote one level of ^>+From
		gt := 0
		for gt < len(chunk) && chunk[gt] == '>' {
			gt++
		}
		if gt > 0 && bytes.HasPrefix(chunk[gt:], fromPrefix) {
			out = append(out, chunk[1:]...)
		} else {
			out = append(out, chunk...)
		}
		m.buf, m.pending = out, out
	} else {
		m.buf = append(m.buf[:0], chunk...)
		m.pending = m.buf
	}
	m.lineStart = complete
	if err == io.EOF && !complete {
		// a last line without a line ending
		m.done = true
		m.pending = append(m.pending, m.blank...)
		m.blank = nil
		return nil
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("mbox: line %d: %w", m.r.line, err)
	}
	return nil
}

func isBlank(b []byte) bool {
	return (len(b) == 1 && b[0] == '\n') || (len(b) == 2 && b[0] == '\r' && b[1] == '\n')
}
