package imports

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// prepared is a message as it goes on the wire: a leading mbox postmark
// removed, some header fields dropped, line endings made CRLF. The bytes are
// otherwise untouched.
type prepared struct {
	br        *bufio.Reader
	inHeader  bool
	first     bool
	drop      []string // lower-case field names to remove
	dropping  bool
	pending   []byte
	lastCR    bool
	hdr       bytes.Buffer // the header as sent, at most maxHeaderBytes
	keepHdr   bool
	srcClosed io.Closer
}

func newPrepared(r io.ReadCloser, drop []string) *prepared {
	return &prepared{br: bufio.NewReaderSize(r, 64<<10), inHeader: true, first: true, drop: drop, keepHdr: true, srcClosed: r}
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
		out := line
		if p.first {
			p.first = false
			if bytes.HasPrefix(line, []byte("From ")) {
				// an mbox postmark at the top of an .eml file: not part of the message
				if line[len(line)-1] != '\n' {
					p.skipRestOfLine()
				}
				continue
			}
		}
		if p.inHeader && p.dropping || p.inHeader && len(p.drop) > 0 && line[0] != ' ' && line[0] != '\t' {
			if line[0] == ' ' || line[0] == '\t' {
				if p.dropping {
					continue // continuation of a dropped field
				}
			} else {
				p.dropping = false
				if k, _, ok := strings.Cut(string(line), ":"); ok {
					for _, d := range p.drop {
						if strings.EqualFold(strings.TrimSpace(k), d) {
							p.dropping = true
						}
					}
				}
				if p.dropping {
					continue
				}
			}
		}
		if p.inHeader && len(bytes.TrimRight(line, "\r\n")) == 0 {
			p.inHeader = false
		}
		out = p.crlf(out)
		if p.inHeader && p.keepHdr && p.hdr.Len() < maxHeaderBytes {
			p.hdr.Write(out)
		}
		p.pending = out
		if err != nil && len(p.pending) == 0 {
			return 0, err
		}
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	return n, nil
}

func (p *prepared) skipRestOfLine() {
	for {
		_, err := p.br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return
		}
	}
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

// measure returns the size and header of a message as prepare would send
// it, and refuses what is not a message IMAP can carry.
func measure(r io.ReadCloser, drop []string) (int64, []byte, error) {
	p := newPrepared(r, drop)
	defer p.Close()
	nul := &nulFinder{}
	n, err := io.Copy(nul, p)
	if err != nil {
		return n, nil, err
	}
	hdr := p.hdr.Bytes()
	switch {
	case bytes.HasPrefix(hdr, []byte("PK\x03\x04")):
		return n, nil, errors.New("this is a zip archive, not a message: unzip it and import what is inside")
	case nul.found:
		return n, nil, errors.New("the message holds NUL bytes, which an IMAP APPEND cannot carry; skipped")
	case !looksLikeHeader(hdr):
		return n, nil, errors.New("no mail header at the start (is it a mail message?); skipped")
	}
	return n, hdr, nil
}

type nulFinder struct{ found bool }

func (f *nulFinder) Write(p []byte) (int, error) {
	if !f.found && bytes.IndexByte(p, 0) >= 0 {
		f.found = true
	}
	return len(p), nil
}

// looksLikeHeader reports whether a message starts with a header field.
func looksLikeHeader(hdr []byte) bool {
	line, _, _ := bytes.Cut(hdr, []byte("\n"))
	name, _, ok := bytes.Cut(line, []byte(":"))
	if !ok || len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
