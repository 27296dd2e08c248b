package imports

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// prepared is a message as it goes on the wire: some header fields dropped
// (only for Proton Mail Bridge), line endings made CRLF. The bytes are
// otherwise untouched: no line is stripped or rewritten, not even a
// leading "From " line (an mbox postmark is removed by the mbox reader,
// where the format defines one, never here).
type prepared struct {
	br        *bufio.Reader
	inHeader  bool
	midLine   bool     // the last chunk did not end a line
	drop      []string // lower-case field names to remove
	dropping  bool
	pending   []byte
	lastCR    bool
	sieve     headerSieve // the header fields an import reads, however long the header
	keepHdr   bool
	head      []byte // the first bytes sent, to recognise a zip archive
	srcClosed io.Closer
}

func newPrepared(r io.ReadCloser, drop []string) *prepared {
	return &prepared{br: bufio.NewReaderSize(r, 64<<10), inHeader: true, drop: drop, keepHdr: true, srcClosed: r}
}

func (p *prepared) Close() error { return p.srcClosed.Close() }

func (p *prepared) Read(b []byte) (int, error) {
	for len(p.pending) == 0 {
		line, err := p.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil
		}
		if len(line) == 0 {
			if err == nil {
				continue
			}
			return 0, err
		}
		lineStart := !p.midLine
		p.midLine = line[len(line)-1] != '\n'
		if p.inHeader && len(p.drop) > 0 {
			if lineStart && line[0] != ' ' && line[0] != '\t' {
				p.dropping = false
				if k, _, ok := strings.Cut(string(line), ":"); ok {
					for _, d := range p.drop {
						if strings.EqualFold(strings.TrimSpace(k), d) {
							p.dropping = true
						}
					}
				}
			}
			if p.dropping {
				continue // the field, its continuation lines and pieces
			}
		}
		if p.inHeader && lineStart && len(bytes.TrimRight(line, "\r\n")) == 0 {
			p.inHeader = false
		}
		out := p.crlf(line)
		if p.inHeader && p.keepHdr {
			p.sieve.write(out, lineStart)
		}
		if len(p.head) < 8 {
			p.head = append(p.head, out[:min(len(out), 8-len(p.head))]...)
		}
		p.pending = out
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

// crlf turns a bare LF into CRLF. The chunk is a whole line or a piece of
// one; lastCR remembers a CR at the end of the previous piece.
func (p *prepared) crlf(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	prevCR := p.lastCR
	p.lastCR = b[len(b)-1] == '\r'
	if b[len(b)-1] != '\n' {
		return b
	}
	if len(b) >= 2 && b[len(b)-2] == '\r' || len(b) == 1 && prevCR {
		return b
	}
	out := make([]byte, 0, len(b)+1)
	out = append(out, b[:len(b)-1]...)
	return append(out, '\r', '\n')
}

// Limits of what headerSieve keeps.
const (
	maxFieldBytes = 64 << 10 // of one field kept
	maxSieveBytes = 1 << 20  // of all fields kept
)

// sievedFields are the header fields parseHeader reads.
var sievedFields = map[string]bool{
	"message-id": true, "date": true, "from": true, "received": true, "status": true, "x-status": true,
	"x-keywords": true, "x-mozilla-status": true, "x-gmail-labels": true,
}

// headerSieve keeps the header fields an import reads, wherever they are in
// a header of any length (a Message-ID after a 1.2 MB header line
// included), each cut at maxFieldBytes; other fields are passed over
// without being kept.
type headerSieve struct {
	buf  bytes.Buffer
	keep bool
	n    int // bytes of the current field kept
}

// write takes the next chunk of the header: a line or a piece of one
// (lineStart says whether it begins a line).
func (s *headerSieve) write(chunk []byte, lineStart bool) {
	if lineStart && len(chunk) > 0 && chunk[0] != ' ' && chunk[0] != '\t' {
		s.keep, s.n = false, 0
		if name, _, ok := bytes.Cut(chunk, []byte(":")); ok {
			s.keep = sievedFields[strings.ToLower(string(bytes.TrimSpace(name)))]
		}
		if s.keep && s.buf.Len() > 0 && !bytes.HasSuffix(s.buf.Bytes(), []byte("\n")) {
			s.buf.WriteString("\r\n") // the field before was cut short
		}
	}
	if !s.keep || s.buf.Len() >= maxSieveBytes {
		return
	}
	room := min(maxFieldBytes-s.n, maxSieveBytes-s.buf.Len())
	if room <= 0 {
		return
	}
	if len(chunk) > room {
		chunk = chunk[:room]
	}
	s.buf.Write(chunk)
	s.n += len(chunk)
}

// header returns the kept fields as a header, ended by an empty line.
func (s *headerSieve) header() []byte {
	b := append([]byte(nil), s.buf.Bytes()...)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\r', '\n')
	}
	return append(b, '\r', '\n')
}

// nulFinder notes whether NUL bytes went through it.
type nulFinder struct{ found bool }

func (f *nulFinder) Write(p []byte) (int, error) {
	if !f.found && bytes.IndexByte(p, 0) >= 0 {
		f.found = true
	}
	return len(p), nil
}
