package account

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

// CapGmailExt is the capability by which Gmail is recognised.
const CapGmailExt imap.Cap = "X-GM-EXT-1"

// IsGmail reports whether the server announced Gmail's extensions
// (X-GM-EXT-1).
func (c *Conn) IsGmail() bool { return c.Caps().Has(CapGmailExt) }

// GmailConn is a small IMAP connection of its own for Gmail's extensions:
// go-imap v2 tears the connection down on FETCH items it does not know
// (X-GM-MSGID, X-GM-THRID, X-GM-LABELS), so the metadata pass of a Gmail
// export and the label STOREs of an import go through this one. Bodies and
// APPENDs still go through go-imap. Commands are sent one at a time.
type GmailConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	n    int
	// throttled counts the OK [THROTTLED] answers in a row: the next
	// command waits first (see wirewatch.go).
	throttled int
}

// GmailMeta is what the metadata pass of a Gmail export learns of a message.
type GmailMeta struct {
	UID          uint32
	Flags        []string
	InternalDate time.Time
	Size         int64
	// MsgID and ThrID are X-GM-MSGID and X-GM-THRID.
	MsgID, ThrID uint64
	// Labels are X-GM-LABELS as the server sent them (\Inbox, \Sent,
	// \Important, \Starred, user labels).
	Labels []string
}

// DialGmail logs in on a connection of its own (see GmailConn). It logs in
// as Dial does (LOGIN with the account's password).
func (cfg *Config) DialGmail(ctx context.Context) (*GmailConn, error) {
	return oauthRetry(cfg, func(fresh bool) (*GmailConn, error) { return cfg.dialGmail(ctx, fresh) })
}

func (cfg *Config) dialGmail(ctx context.Context, fresh bool) (*GmailConn, error) {
	u := cfg.URL
	raw, conn, br, pw, err := cfg.dialRaw(ctx)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*GmailConn, error) {
		raw.Close()
		return nil, err
	}
	g := &GmailConn{conn: conn}
	g.wire(cfg, br, conn)
	if u.Auth.IsOAuth() {
		// the token goes to the connection itself, never through the debug tee
		if err := cfg.oauthLogin(ctx, &rawIMAP{br: g.br, w: g.conn}, fresh); err != nil {
			return fail(err)
		}
	} else if err := g.login(u, pw); err != nil {
		return fail(err)
	}
	return g, nil
}

// login signs in with the account's password (LOGIN). An OAuth2 account
// (XOAUTH2) signs in here the way Dial and DialAppender do.
func (g *GmailConn) login(u *URL, pw string) error {
	if strings.ContainsAny(u.User+pw, "\r\n\x00") {
		return errors.New("the user name or password cannot be sent in a LOGIN")
	}
	if err := g.simple("LOGIN " + quote(u.User) + " " + quote(pw)); err != nil {
		return &ConnectError{Op: "login to", Addr: u.Addr(), Err: err}
	}
	return nil
}

// wire sets up reading (from r, which reads c) and writing on c, logged (credentials redacted) to
// cfg.Debug when set (--debug-imap).
func (g *GmailConn) wire(cfg *Config, r io.Reader, c net.Conn) {
	var w io.Writer = c
	if cfg.Debug != nil {
		r = io.TeeReader(r, &redactor{w: cfg.Debug})
		w = io.MultiWriter(c, &redactor{w: cfg.Debug})
	}
	g.br, g.bw = bufio.NewReader(r), bufio.NewWriter(w)
}

// Close ends the connection (LOGOUT, then close).
func (g *GmailConn) Close() error {
	g.simple("LOGOUT")
	return g.conn.Close()
}

// gtok is a parsed response item: an atom, a string or a list.
type gtok struct {
	atom string
	str  *string
	list []gtok
	isL  bool
}

func (t gtok) text() string {
	if t.str != nil {
		return *t.str
	}
	return t.atom
}

// ByeError is the server's BYE: it closed the connection, saying why.
type ByeError struct{ Text string }

func (e *ByeError) Error() string { return "the server closed the connection: " + e.Text }

// cmd sends one command and reads its answer; each untagged response is
// handed to fn, parsed. A NO or BAD is an *imap.Error.
func (g *GmailConn) cmd(c string, fn func([]gtok)) error {
	if g.throttled > 0 {
		time.Sleep(min(ThrottleWait<<min(g.throttled-1, 10), time.Minute))
	}
	g.n++
	tag := "G" + strconv.Itoa(g.n)
	if _, err := g.bw.WriteString(tag + " " + c + "\r\n"); err != nil {
		return err
	}
	if err := g.bw.Flush(); err != nil {
		return err
	}
	for {
		line, toks, err := g.readResponse()
		if err != nil {
			return &ReadError{Err: err}
		}
		t, rest, _ := strings.Cut(line, " ")
		switch {
		case t == tag:
			if strings.HasPrefix(strings.ToUpper(rest), "OK [THROTTLED]") {
				g.throttled++
			} else {
				g.throttled = 0
			}
			return parseStatus(rest)
		case t == "*" && len(toks) > 0 && strings.EqualFold(toks[0].atom, "BYE") && !strings.HasPrefix(c, "LOGOUT"):
			_, text, _ := strings.Cut(rest, " ")
			return &ByeError{Text: text}
		case t == "*" && fn != nil:
			fn(toks)
		}
	}
}

func (g *GmailConn) simple(c string) error { return g.cmd(c, nil) }

// readResponse reads one response, its literals included, and returns its
// first line and its items after the tag.
func (g *GmailConn) readResponse() (string, []gtok, error) {
	first := ""
	var stack [][]gtok
	var cur []gtok
	firstLine := true
	for {
		line, err := g.br.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		i := 0
		if firstLine {
			first = line
			firstLine = false
			if j := strings.IndexByte(line, ' '); j >= 0 {
				i = j + 1
			} else {
				i = len(line)
			}
		}
		lit := int64(-1)
		for i < len(line) {
			switch ch := line[i]; {
			case ch == ' ':
				i++
			case ch == '(':
				stack = append(stack, cur)
				cur = nil
				i++
			case ch == ')':
				if len(stack) > 0 {
					l := gtok{list: cur, isL: true}
					cur = append(stack[len(stack)-1], l)
					stack = stack[:len(stack)-1]
				}
				i++
			case ch == '"':
				var b strings.Builder
				i++
				for i < len(line) && line[i] != '"' {
					if line[i] == '\\' && i+1 < len(line) {
						i++
					}
					b.WriteByte(line[i])
					i++
				}
				i++
				v := b.String()
				cur = append(cur, gtok{str: &v})
			case ch == '{' && strings.HasSuffix(line, "}") && !strings.Contains(line[i:], " "):
				n, err := strconv.ParseInt(strings.TrimSuffix(line[i+1:len(line)-1], "+"), 10, 64)
				if err != nil {
					return "", nil, err
				}
				lit, i = n, len(line)
			default:
				j, depth := i, 0
				for j < len(line) {
					c := line[j]
					if c == '[' {
						depth++
					} else if c == ']' {
						depth--
					} else if depth <= 0 && (c == ' ' || c == '(' || c == ')') {
						break
					}
					j++
				}
				cur = append(cur, gtok{atom: line[i:j]})
				i = j
			}
		}
		if lit < 0 {
			for len(stack) > 0 { // unbalanced: close what is open
				l := gtok{list: cur, isL: true}
				cur = append(stack[len(stack)-1], l)
				stack = stack[:len(stack)-1]
			}
			return first, cur, nil
		}
		b := make([]byte, lit)
		if _, err := io.ReadFull(g.br, b); err != nil {
			return "", nil, err
		}
		v := string(b)
		cur = append(cur, gtok{str: &v})
	}
}

// Examine opens a mailbox read-only and returns its UIDVALIDITY and
// message count.
func (g *GmailConn) Examine(name string) (uidValidity, exists uint32, err error) {
	err = g.cmd("EXAMINE "+quote(encodeUTF7(name)), func(t []gtok) {
		if len(t) >= 2 && strings.EqualFold(t[1].atom, "EXISTS") {
			n, _ := strconv.ParseUint(t[0].atom, 10, 32)
			exists = uint32(n)
		}
		if len(t) >= 2 && strings.EqualFold(t[0].atom, "OK") && strings.HasPrefix(strings.ToUpper(t[1].atom), "[UIDVALIDITY ") {
			n, _ := strconv.ParseUint(strings.TrimSuffix(t[1].atom[len("[UIDVALIDITY "):], "]"), 10, 32)
			uidValidity = uint32(n)
		}
	})
	if err != nil {
		return 0, 0, fmt.Errorf("EXAMINE %q: %w", name, err)
	}
	return uidValidity, exists, nil
}

// Select opens a mailbox read-write (for STORE).
func (g *GmailConn) Select(name string) error {
	if err := g.simple("SELECT " + quote(encodeUTF7(name))); err != nil {
		return fmt.Errorf("SELECT %q: %w", name, err)
	}
	return nil
}

// FetchMeta returns UID, FLAGS, INTERNALDATE, RFC822.SIZE, X-GM-MSGID,
// X-GM-THRID and X-GM-LABELS of every message of the open mailbox.
func (g *GmailConn) FetchMeta() ([]GmailMeta, error) {
	var out []GmailMeta
	err := g.cmd("UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE X-GM-MSGID X-GM-THRID X-GM-LABELS)", func(t []gtok) {
		if len(t) < 3 || !strings.EqualFold(t[1].atom, "FETCH") || !t[2].isL {
			return
		}
		var m GmailMeta
		items := t[2].list
		for i := 0; i+1 < len(items); i += 2 {
			v := items[i+1]
			switch strings.ToUpper(items[i].atom) {
			case "UID":
				n, _ := strconv.ParseUint(v.atom, 10, 32)
				m.UID = uint32(n)
			case "FLAGS":
				for _, f := range v.list {
					if !strings.EqualFold(f.atom, `\Recent`) {
						m.Flags = append(m.Flags, f.atom)
					}
				}
			case "INTERNALDATE":
				m.InternalDate, _ = time.Parse("_2-Jan-2006 15:04:05 -0700", v.text())
			case "RFC822.SIZE":
				m.Size, _ = strconv.ParseInt(v.atom, 10, 64)
			case "X-GM-MSGID":
				m.MsgID, _ = strconv.ParseUint(v.atom, 10, 64)
			case "X-GM-THRID":
				m.ThrID, _ = strconv.ParseUint(v.atom, 10, 64)
			case "X-GM-LABELS":
				for _, l := range v.list {
					t := l.text()
					if !strings.HasPrefix(t, `\`) {
						t = DecodeUTF7(t)
					}
					m.Labels = append(m.Labels, t)
				}
			}
		}
		if m.UID != 0 {
			if m.Flags == nil {
				m.Flags = []string{}
			}
			out = append(out, m)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("UID FETCH (X-GM-MSGID X-GM-THRID X-GM-LABELS ...): %w", err)
	}
	return out, nil
}

// AddLabels gives the message uid of the selected mailbox the labels
// (UID STORE uid +X-GM-LABELS (...)). System labels (\Important,
// \Starred) are sent as atoms, the others as quoted strings in modified
// UTF-7.
func (g *GmailConn) AddLabels(uid uint32, labels []string) error {
	if len(labels) == 0 {
		return nil
	}
	var ls []string
	for _, l := range labels {
		if strings.HasPrefix(l, `\`) && !strings.ContainsAny(l, ` "()`) {
			ls = append(ls, l)
		} else {
			ls = append(ls, quote(encodeUTF7(l)))
		}
	}
	if err := g.simple(fmt.Sprintf("UID STORE %d +X-GM-LABELS (%s)", uid, strings.Join(ls, " "))); err != nil {
		return fmt.Errorf("UID STORE %d +X-GM-LABELS: %w", uid, err)
	}
	return nil
}

// EncodeUTF7 encodes a mailbox or label name in IMAP's modified UTF-7
// (RFC 3501 5.1.3), as Gmail wants label names in STORE X-GM-LABELS.
func EncodeUTF7(s string) string { return encodeUTF7(s) }

var mutf7Enc = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// DecodeUTF7 decodes a name in modified UTF-7 ("B&APw-ro" is "Büro",
// "R&-D" is "R&D"), as Gmail sends label names in X-GM-LABELS. A name that
// is not valid modified UTF-7 comes back unchanged.
func DecodeUTF7(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return s
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return s
		}
		enc := s[i+1 : i+1+j]
		i += j + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7Enc.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 || len(raw) == 0 {
			return s
		}
		u := make([]uint16, len(raw)/2)
		for k := range u {
			u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		for _, r := range utf16.Decode(u) {
			if r == utf8.RuneError || (r >= 0x20 && r <= 0x7e) {
				return s
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}
