// Package message is the middle of the mailmove pipeline: what a reader (an
// IMAP account, Proton Mail Bridge, an archive) hands to a writer (an
// archive, an IMAP account). A message is its RFC 5322 bytes, streamed, plus
// the metadata a mail server keeps beside them.
package message

import (
	"bufio"
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"time"
)

// Progress receives progress reports from a run, export or import; calls
// come from several goroutines.
type Progress interface {
	// Planned is called once with what the run will move at most.
	Planned(messages int, bytes int64)
	// Message is called after each message is written, with its size.
	Message(folder string, size int64)
}

// Meta is what a server knows about a message besides its bytes.
type Meta struct {
	// Folder is the folder path, segments joined with "/" whatever the
	// server's delimiter (a "/" inside a segment is kept escaped by Segments).
	Folder string `json:"folder"`
	// Segments is the folder path as segments, as the server named them.
	Segments []string `json:"-"`
	// UIDValidity and UID identify the message on the server it came from.
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
	// Flags holds system flags (\Seen, \Deleted, ...) and keywords, as the
	// server sent them; \Recent is left out.
	Flags []string `json:"flags"`
	// InternalDate is the server's arrival date (IMAP INTERNALDATE).
	InternalDate time.Time `json:"internaldate"`
	// Size is the exact number of bytes of the message.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the bytes.
	SHA256 string `json:"sha256"`
	// MessageID is the Message-ID header without angle brackets, if any.
	MessageID string `json:"message_id,omitempty"`
	// PMInternalID is Proton's X-Pm-Internal-Id header, if any.
	PMInternalID string `json:"pm_internal_id,omitempty"`
	// Labels are the Proton labels (Bridge's Labels/... folders) the message
	// carries; Starred is one of them when the message is starred.
	Labels []string `json:"labels,omitempty"`
	// GmailMsgID and GmailThrID are Gmail's X-GM-MSGID and X-GM-THRID, in
	// decimal (strings: they pass 2^53, where JSON readers lose digits).
	GmailMsgID string `json:"gm_msgid,omitempty"`
	GmailThrID string `json:"gm_thrid,omitempty"`
	// GmailLabels are Gmail's X-GM-LABELS of the message (\Inbox, \Sent,
	// \Important, \Starred, user labels), whichever folder it is stored in.
	GmailLabels []string `json:"gm_labels,omitempty"`
	// Undecryptable is set when Proton Mail Bridge served the message with
	// its "could not be decrypted" placeholder: the archive holds what Bridge
	// gave, not the readable message.
	Undecryptable bool `json:"undecryptable,omitempty"`
	// Sender is the envelope sender (Return-Path), if the message has one.
	Sender string `json:"-"`
}

// ContentKey returns the key by which the same message is recognised after
// its UID changed: Proton's internal ID when there is one, else Message-ID,
// size and SHA-256.
func (m *Meta) ContentKey() string {
	if m.PMInternalID != "" {
		return "pm:" + m.PMInternalID
	}
	return "mid:" + m.MessageID + "|" + itoa(m.Size) + "|" + m.SHA256
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// HeaderSniffer watches the bytes of a message go by and keeps the header
// fields mailmove records (Message-ID, X-Pm-Internal-Id, Return-Path). It
// holds at most MaxHeader bytes.
type HeaderSniffer struct {
	buf  bytes.Buffer
	done bool
}

// MaxHeader is the most header bytes a HeaderSniffer keeps.
const MaxHeader = 256 << 10

// Write implements io.Writer; it never fails.
func (h *HeaderSniffer) Write(p []byte) (int, error) {
	if h.done {
		return len(p), nil
	}
	room := MaxHeader - h.buf.Len()
	q := p
	if len(q) > room {
		q = q[:room]
	}
	h.buf.Write(q)
	b := h.buf.Bytes()
	if bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n")) || h.buf.Len() >= MaxHeader {
		h.done = true
	}
	return len(p), nil
}

// Fields parses what was seen. Broken headers give what could be read.
func (h *HeaderSniffer) Fields() (messageID, pmID, sender string) {
	return HeaderFields(bufio.NewReader(bytes.NewReader(h.buf.Bytes())))
}

// HeaderFields reads a message header from r and returns its Message-ID
// (without <>), X-Pm-Internal-Id and Return-Path address. It is lenient:
// a malformed line is skipped, not an error.
func HeaderFields(r *bufio.Reader) (messageID, pmID, sender string) {
	var key, val string
	flush := func() {
		v := strings.TrimSpace(val)
		switch strings.ToLower(key) {
		case "message-id":
			if messageID == "" {
				messageID = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
			}
		case "x-pm-internal-id":
			if pmID == "" {
				pmID = v
			}
		case "return-path":
			v = strings.TrimSuffix(strings.TrimPrefix(v, "<"), ">")
			if sender == "" && v != "" && !strings.ContainsAny(v, " \t") {
				sender = v
			}
		}
		key, val = "", ""
	}
	for {
		line, err := r.ReadString('\n')
		t := strings.TrimRight(line, "\r\n")
		if t == "" {
			break
		}
		if t[0] == ' ' || t[0] == '\t' {
			val += " " + strings.TrimSpace(t)
		} else {
			flush()
			if k, v, ok := strings.Cut(t, ":"); ok {
				key, val = strings.TrimSpace(k), v
			}
		}
		if err != nil {
			break
		}
	}
	flush()
	return
}

// Markers Proton Mail Bridge puts in a message or attachment it could not
// decrypt (as the comment of the armored PGP block it serves instead).
var undecryptableMarkers = [][]byte{
	[]byte("This message could not be decrypted"),
	[]byte("This attachment could not be decrypted"),
}

// DecryptScanner watches message bytes go by for Bridge's "could not be
// decrypted" markers. It holds a few dozen bytes.
type DecryptScanner struct {
	tail  []byte
	Found bool
}

// Write implements io.Writer; it never fails.
func (d *DecryptScanner) Write(p []byte) (int, error) {
	if d.Found {
		return len(p), nil
	}
	buf := append(d.tail, p...)
	for _, m := range undecryptableMarkers {
		if bytes.Contains(buf, m) {
			d.Found = true
			return len(p), nil
		}
	}
	keep := 64
	if len(buf) < keep {
		keep = len(buf)
	}
	d.tail = append(d.tail[:0], buf[len(buf)-keep:]...)
	return len(p), nil
}

// SubjectDate reads the Subject (RFC 2047 decoded) and the Date of a
// message header (a zero time when there is none or it cannot be read),
// for reports.
func SubjectDate(hdr []byte) (string, time.Time) {
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte(nil), hdr...), '\r', '\n', '\r', '\n')))
	if err != nil {
		return "", time.Time{}
	}
	subject := m.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = d
	}
	date, _ := m.Header.Date()
	return subject, date
}
