// Package gmailstub is a Gmail stand-in for mailmove's tests: a small IMAP
// server of its own, on 127.0.0.1 with implicit TLS and a self-signed
// certificate, that serves Gmail's model (one store of messages with labels;
// mailboxes are views of it) and Gmail's IMAP extensions (X-GM-EXT-1:
// X-GM-MSGID, X-GM-THRID, X-GM-LABELS in FETCH and STORE), AUTHENTICATE
// XOAUTH2, APPENDLIMIT and the daily bandwidth caps ([OVERQUOTA]).
//
// It is test-only code: the product does not import it. It implements the
// subset of IMAP that mailmove (and go-imap's client) send: CAPABILITY, ID,
// LOGIN, AUTHENTICATE XOAUTH2, LIST, STATUS, SELECT, EXAMINE, UID SEARCH,
// UID FETCH, UID STORE, APPEND, CREATE, ENABLE, NOOP, UNSELECT, CLOSE,
// LOGOUT. go-imap's imapserver cannot serve X-GM-* items, hence its own.
package gmailstub

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailmove/mailmove/account"
)

// Names are the mailbox names of an account: Gmail localises them.
type Names struct {
	Prefix                                             string // "[Gmail]" or "[Google Mail]"
	All, Sent, Drafts, Spam, Trash, Starred, Important string
}

// English is what a gmail.com account in English shows.
var English = Names{Prefix: "[Gmail]", All: "All Mail", Sent: "Sent Mail", Drafts: "Drafts", Spam: "Spam", Trash: "Trash", Starred: "Starred", Important: "Important"}

// German is a German account with the "[Google Mail]" prefix.
var German = Names{Prefix: "[Google Mail]", All: "Alle Nachrichten", Sent: "Gesendet", Drafts: "Entwürfe", Spam: "Spam", Trash: "Papierkorb", Starred: "Markiert", Important: "Wichtig"}

// British is an English account whose Trash is called Bin.
var British = Names{Prefix: "[Gmail]", All: "All Mail", Sent: "Sent Mail", Drafts: "Drafts", Spam: "Spam", Trash: "Bin", Starred: "Starred", Important: "Important"}

// Options configure a Server.
type Options struct {
	User, Password string
	// Token, if set, is the OAuth2 access token AUTHENTICATE XOAUTH2 accepts.
	Token string
	// Names are the mailbox names (default English).
	Names Names
	// AppendLimit is announced as APPENDLIMIT and enforced (default
	// 35651584, Gmail's).
	AppendLimit int64
	// DownloadCap, when > 0, makes every FETCH of a body answer
	// "NO [OVERQUOTA] ..." once that many body bytes were served; UploadCap
	// the same for APPEND.
	DownloadCap, UploadCap int64
	// ByeOnCap makes a download cap end the connection with an untagged
	// "BYE ... bandwidth ..." instead of the NO [OVERQUOTA] answer (as
	// Gmail sometimes does).
	ByeOnCap bool
	// Throttle is how many UID FETCH commands of bodies are answered
	// "OK [THROTTLED]" (the command done, the client asked to slow down);
	// -1: all of them.
	Throttle int
	// ThrottleMeta is the same for the FETCHes of X-GM-MSGID (the
	// metadata pass).
	ThrottleMeta int
}

// Message is one message of the store.
type Message struct {
	MsgID, ThrID uint64
	Body         []byte
	Date         time.Time
	// Labels: \Inbox, \Sent, \Draft, \Important, \Starred, user labels;
	// Spam and Trash are the internal labels \Spam and \Trash.
	Labels map[string]bool
	// Flags: \Seen, \Answered, \Flagged (mirrors \Starred), ...
	Flags map[string]bool
	uids  map[string]uint32 // mailbox role key -> UID in it
}

type box struct {
	key         string // role or "label:NAME"
	name        string
	attrs       []string
	uidValidity uint32
	uidNext     uint32
}

// Server is a running stand-in.
type Server struct {
	// Addr is host:port.
	Addr string
	// CAFile is a PEM file with the server's certificate, to trust it.
	CAFile string

	o   Options
	ln  net.Listener
	mu  sync.Mutex
	msg []*Message
	// user labels created (CREATE) or seen
	created map[string]bool
	boxes   map[string]*box
	nextUV  uint32
	nextID  uint64
	// BytesServed counts the body bytes served by FETCH; BytesAppended
	// those taken by APPEND.
	bytesServed, bytesAppended int64
	// Appends counts APPEND commands answered OK, Stores UID STORE
	// commands that changed X-GM-LABELS.
	appends, labelStores int
	metaFetches          int
	served               map[uint64]int // X-GM-MSGID -> bodies served
	wg                   sync.WaitGroup
}

// Start starts a stand-in on 127.0.0.1 with a certificate written into dir.
func Start(dir string, o Options) (*Server, error) {
	if o.Names.Prefix == "" {
		o.Names = English
	}
	if o.AppendLimit == 0 {
		o.AppendLimit = 35651584
	}
	cert, pemBytes, err := selfSigned()
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "gmailstub-cert.pem")
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		return nil, err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: ln.Addr().String(), CAFile: caFile, o: o, ln: ln, created: map[string]bool{},
		boxes: map[string]*box{}, nextUV: 100, nextID: 1600000000000000000, served: map[uint64]int{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	err := s.ln.Close()
	return err
}

// Add puts a message into the store with the given labels ("\\Inbox",
// "\\Sent", "\\Spam", "\\Trash", "Work/Projects", ...) and flags, and
// returns its X-GM-MSGID. Thread 0 gives it a thread of its own.
func (s *Server) Add(body []byte, date time.Time, thread uint64, labels []string, flags ...string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.add(body, date, thread, labels, flags)
}

func (s *Server) add(body []byte, date time.Time, thread uint64, labels, flags []string) uint64 {
	s.nextID += 17
	m := &Message{MsgID: s.nextID, ThrID: thread, Body: append([]byte(nil), body...), Date: date,
		Labels: map[string]bool{}, Flags: map[string]bool{}, uids: map[string]uint32{}}
	if m.ThrID == 0 {
		m.ThrID = m.MsgID
	}
	for _, l := range labels {
		m.Labels[l] = true
	}
	for _, f := range flags {
		m.Flags[f] = true
	}
	if m.Labels[`\Starred`] {
		m.Flags[`\Flagged`] = true
	}
	if m.Flags[`\Flagged`] {
		m.Labels[`\Starred`] = true
	}
	s.msg = append(s.msg, m)
	return m.MsgID
}

// Messages returns a copy of the store.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msg {
		c := *m
		c.Labels = map[string]bool{}
		for l := range m.Labels {
			c.Labels[l] = true
		}
		c.Flags = map[string]bool{}
		for f := range m.Flags {
			c.Flags[f] = true
		}
		out = append(out, c)
	}
	return out
}

// Stats are the counters of a Server.
type Stats struct {
	// BytesServed are the body bytes FETCH served; BytesAppended the
	// message bytes APPEND took.
	BytesServed, BytesAppended int64
	// Appends counts the APPENDs answered OK (dropped duplicates
	// included); LabelStores the UID STORE commands on X-GM-LABELS.
	Appends, LabelStores int
	// MetaFetches counts the FETCH commands that asked for X-GM-MSGID.
	MetaFetches int
	// Served counts, per X-GM-MSGID, how often its body was served.
	Served map[uint64]int
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{BytesServed: s.bytesServed, BytesAppended: s.bytesAppended, Appends: s.appends, LabelStores: s.labelStores,
		MetaFetches: s.metaFetches, Served: map[uint64]int{}}
	for k, v := range s.served {
		st.Served[k] = v
	}
	return st
}

// Relabel gives the message with X-GM-MSGID id exactly these labels and
// flags, as a user does in Gmail's web interface.
func (s *Server) Relabel(id uint64, labels []string, flags ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msg {
		if m.MsgID != id {
			continue
		}
		m.Labels, m.Flags = map[string]bool{}, map[string]bool{}
		for _, l := range labels {
			m.Labels[l] = true
		}
		for _, f := range flags {
			m.Flags[f] = true
		}
		if m.Labels[`\Starred`] {
			m.Flags[`\Flagged`] = true
		}
		if m.Flags[`\Flagged`] {
			m.Labels[`\Starred`] = true
		}
	}
}

// Expunge deletes the message with X-GM-MSGID id for good (gone from All
// Mail and every other mailbox), as emptying Trash or "Delete forever"
// does in Gmail's web interface.
func (s *Server) Expunge(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msg = slices.DeleteFunc(s.msg, func(m *Message) bool { return m.MsgID == id })
}

// SetCaps changes the download and upload caps (0: none) and resets the
// byte counters, as a new day does.
func (s *Server) SetCaps(download, upload int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.o.DownloadCap, s.o.UploadCap = download, upload
	s.bytesServed, s.bytesAppended = 0, 0
}

// SetThrottle changes Options.Throttle.
func (s *Server) SetThrottle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.o.Throttle = n
}

// mailboxes lists the views, in LIST order, and assigns UIDs.
func (s *Server) mailboxes() []*box {
	n := s.o.Names
	roles := []struct{ key, name, attr string }{
		{"inbox", "INBOX", ""},
		{"all", n.All, `\All`},
		{"drafts", n.Drafts, `\Drafts`},
		{"important", n.Important, `\Important`},
		{"sent", n.Sent, `\Sent`},
		{"spam", n.Spam, `\Junk`},
		{"starred", n.Starred, `\Flagged`},
		{"trash", n.Trash, `\Trash`},
	}
	var out []*box
	for _, r := range roles {
		name := r.name
		if r.key != "inbox" {
			name = n.Prefix + "/" + r.name
		}
		var attrs []string
		if r.attr != "" {
			attrs = []string{r.attr}
		}
		out = append(out, s.boxFor(r.key, name, attrs))
	}
	labels := map[string]bool{}
	for l := range s.created {
		labels[l] = true
	}
	for _, m := range s.msg {
		for l := range m.Labels {
			if !strings.HasPrefix(l, `\`) {
				labels[l] = true
			}
		}
	}
	for l := range labels {
		parts := strings.Split(l, "/")
		for i := 1; i < len(parts); i++ {
			labels[strings.Join(parts[:i], "/")] = true
		}
	}
	var names []string
	for l := range labels {
		names = append(names, l)
	}
	sort.Strings(names)
	for _, l := range names {
		out = append(out, s.boxFor("label:"+l, l, nil))
	}
	return out
}

func (s *Server) boxFor(key, name string, attrs []string) *box {
	b, ok := s.boxes[key]
	if !ok {
		s.nextUV++
		b = &box{key: key, name: name, attrs: attrs, uidValidity: s.nextUV, uidNext: 1}
		s.boxes[key] = b
	}
	return b
}

// in reports whether m is in the view b.
func in(b *box, m *Message) bool {
	hidden := m.Labels[`\Spam`] || m.Labels[`\Trash`]
	switch b.key {
	case "inbox":
		return !hidden && m.Labels[`\Inbox`]
	case "all":
		return !hidden
	case "drafts":
		return !hidden && m.Labels[`\Draft`]
	case "important":
		return !hidden && m.Labels[`\Important`]
	case "sent":
		return !hidden && m.Labels[`\Sent`]
	case "spam":
		return m.Labels[`\Spam`]
	case "starred":
		return !hidden && m.Labels[`\Starred`]
	case "trash":
		return m.Labels[`\Trash`]
	}
	l := strings.TrimPrefix(b.key, "label:")
	return !hidden && m.Labels[l]
}

// labelOf is the label a message gets when it is appended into b.
func labelOf(b *box) string {
	switch b.key {
	case "inbox":
		return `\Inbox`
	case "drafts":
		return `\Draft`
	case "important":
		return `\Important`
	case "sent":
		return `\Sent`
	case "spam":
		return `\Spam`
	case "starred":
		return `\Starred`
	case "trash":
		return `\Trash`
	case "all":
		return ""
	}
	return strings.TrimPrefix(b.key, "label:")
}

// view returns the messages of b in UID order, assigning UIDs to those that
// entered it and dropping those of messages that left.
func (s *Server) view(b *box) []*Message {
	var out []*Message
	for _, m := range s.msg {
		if !in(b, m) {
			delete(m.uids, b.key)
			continue
		}
		if m.uids[b.key] == 0 {
			m.uids[b.key] = b.uidNext
			b.uidNext++
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].uids[b.key] < out[k].uids[b.key] })
	return out
}

func (s *Server) find(name string) *box {
	for _, b := range s.mailboxes() {
		if b.name == name || (b.key == "inbox" && strings.EqualFold(name, "INBOX")) {
			return b
		}
	}
	return nil
}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, p, nil
}

// --- the protocol ---

// tok is a parsed argument: an atom, a string (quoted or literal) or a list.
type tok struct {
	atom string
	str  *string
	list []tok
	isL  bool
}

func (t tok) text() string {
	if t.str != nil {
		return *t.str
	}
	return t.atom
}

type session struct {
	s        *Server
	c        net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	authed   bool
	sel      *box
	readOnly bool
}

func (s *Server) serve(c net.Conn) {
	defer c.Close()
	ss := &session{s: s, c: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c)}
	ss.out("* OK Gimap ready for requests from 127.0.0.1")
	for {
		line, err := ss.br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		tag, rest, _ := strings.Cut(line, " ")
		args, err := ss.parse(rest)
		if err != nil {
			ss.out(tag + " BAD " + err.Error())
			continue
		}
		if len(args) == 0 {
			ss.out(tag + " BAD no command")
			continue
		}
		if !ss.command(tag, strings.ToUpper(args[0].atom), args[1:]) {
			return
		}
	}
}

func (ss *session) out(line string) {
	ss.bw.WriteString(line + "\r\n")
	ss.bw.Flush()
}

// parse tokenises the rest of a command line, reading literals (and the
// line after each) from the connection.
func (ss *session) parse(line string) ([]tok, error) {
	var stack [][]tok
	var cur []tok
	i := 0
	for {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i >= len(line) {
			break
		}
		switch ch := line[i]; {
		case ch == '(':
			stack = append(stack, cur)
			cur = nil
			i++
		case ch == ')':
			if len(stack) == 0 {
				return nil, fmt.Errorf("unbalanced )")
			}
			l := tok{list: cur, isL: true}
			cur = append(stack[len(stack)-1], l)
			stack = stack[:len(stack)-1]
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
			cur = append(cur, tok{str: &v})
		case ch == '{' && strings.HasSuffix(line, "}") && !strings.Contains(line[i:], " "):
			spec := strings.TrimSuffix(line[i+1:len(line)-1], "+")
			n, err := strconv.ParseInt(spec, 10, 64)
			if err != nil {
				return nil, err
			}
			if !strings.HasSuffix(line, "+}") {
				if n > ss.s.o.AppendLimit && ss.s.o.AppendLimit > 0 {
					return nil, fmt.Errorf("[TOOBIG] literal too big")
				}
				ss.out("+ go ahead")
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(ss.br, buf); err != nil {
				return nil, err
			}
			v := string(buf)
			cur = append(cur, tok{str: &v})
			next, err := ss.br.ReadString('\n')
			if err != nil {
				return nil, err
			}
			line, i = strings.TrimRight(next, "\r\n"), 0
		default:
			j := i
			depth := 0
			for j < len(line) {
				c := line[j]
				if c == '[' {
					depth++
				} else if c == ']' {
					depth--
				} else if depth == 0 && (c == ' ' || c == '(' || c == ')') {
					break
				}
				j++
			}
			cur = append(cur, tok{atom: line[i:j]})
			i = j
		}
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("unbalanced (")
	}
	return cur, nil
}

func (ss *session) caps() string {
	return fmt.Sprintf("IMAP4rev1 UNSELECT IDLE NAMESPACE ID CHILDREN X-GM-EXT-1 UIDPLUS ENABLE SPECIAL-USE APPENDLIMIT=%d AUTH=XOAUTH2 AUTH=PLAIN", ss.s.o.AppendLimit)
}

// command runs one command; false ends the session.
func (ss *session) command(tag, cmd string, args []tok) bool {
	s := ss.s
	if !ss.authed {
		switch cmd {
		case "CAPABILITY", "NOOP", "LOGOUT", "ID", "LOGIN", "AUTHENTICATE":
		default:
			ss.out(tag + " BAD not logged in")
			return true
		}
	}
	switch cmd {
	case "CAPABILITY":
		ss.out("* CAPABILITY " + ss.caps())
		ss.out(tag + " OK Thats all she wrote!")
	case "NOOP", "ENABLE", "CHECK":
		ss.out(tag + " OK Success")
	case "LOGOUT":
		ss.out("* BYE LOGOUT Requested")
		ss.out(tag + " OK 73 good day (Success)")
		return false
	case "ID":
		ss.out(`* ID ("name" "GImap" "vendor" "Google, Inc." "support-url" "https://support.google.com/mail")`)
		ss.out(tag + " OK Success")
	case "LOGIN":
		if len(args) == 2 && args[0].text() == s.o.User && s.o.Password != "" && args[1].text() == s.o.Password {
			ss.authed = true
			ss.out(tag + " OK [CAPABILITY " + ss.caps() + "] " + s.o.User + " authenticated (Success)")
		} else {
			ss.out(tag + " NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
		}
	case "AUTHENTICATE":
		ss.authenticate(tag, args)
	case "LIST", "XLIST":
		ss.list(tag, args)
	case "CREATE":
		if len(args) != 1 {
			ss.out(tag + " BAD CREATE needs a name")
			break
		}
		name := account.DecodeUTF7(args[0].text())
		s.mu.Lock()
		exists := s.find(name) != nil
		if !exists {
			s.created[name] = true
		}
		s.mu.Unlock()
		if exists {
			ss.out(tag + " NO [ALREADYEXISTS] Duplicate folder name " + name + " (Failure)")
		} else {
			ss.out(tag + " OK Success")
		}
	case "STATUS":
		ss.status(tag, args)
	case "SELECT", "EXAMINE":
		ss.selectBox(tag, args, cmd == "EXAMINE")
	case "UNSELECT", "CLOSE":
		ss.sel = nil
		ss.out(tag + " OK Returned to authenticated state. (Success)")
	case "UID":
		if len(args) == 0 {
			ss.out(tag + " BAD UID what")
			break
		}
		sub := strings.ToUpper(args[0].atom)
		if ss.sel == nil {
			ss.out(tag + " BAD No mailbox selected")
			break
		}
		switch sub {
		case "SEARCH":
			ss.search(tag, args[1:])
		case "FETCH":
			ss.fetch(tag, args[1:])
		case "STORE":
			ss.store(tag, args[1:])
		default:
			ss.out(tag + " BAD unknown UID command")
		}
	case "APPEND":
		ss.appendMsg(tag, args)
	default:
		ss.out(tag + " BAD Unknown command " + cmd)
	}
	return true
}

func (ss *session) authenticate(tag string, args []tok) {
	s := ss.s
	if len(args) < 1 || !strings.EqualFold(args[0].atom, "XOAUTH2") {
		ss.out(tag + " NO [AUTHENTICATIONFAILED] unsupported mechanism")
		return
	}
	var ir string
	if len(args) > 1 {
		ir = args[1].text()
	} else {
		ss.out("+ ")
		l, err := ss.br.ReadString('\n')
		if err != nil {
			return
		}
		ir = strings.TrimRight(l, "\r\n")
	}
	raw, err := base64.StdEncoding.DecodeString(ir)
	ok := err == nil && s.o.Token != ""
	if ok {
		parts := strings.Split(string(raw), "\x01")
		ok = len(parts) == 4 && parts[0] == "user="+s.o.User && parts[1] == "auth=Bearer "+s.o.Token && parts[2] == "" && parts[3] == ""
	}
	if ok {
		ss.authed = true
		ss.out(tag + " OK [CAPABILITY " + ss.caps() + "] " + s.o.User + " authenticated (Success)")
		return
	}
	ch := base64.StdEncoding.EncodeToString([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`))
	ss.out("+ " + ch)
	if _, err := ss.br.ReadString('\n'); err != nil {
		return
	}
	ss.out(tag + " NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func (ss *session) list(tag string, args []tok) {
	s := ss.s
	if len(args) < 2 {
		ss.out(tag + " BAD LIST needs two arguments")
		return
	}
	s.mu.Lock()
	boxes := s.mailboxes()
	s.mu.Unlock()
	children := map[string]bool{}
	for _, b := range boxes {
		if i := strings.LastIndex(b.name, "/"); i > 0 {
			children[b.name[:i]] = true
		}
	}
	var lines []string
	lines = append(lines, `* LIST (\HasChildren \Noselect) "/" `+quote(s.o.Names.Prefix))
	for _, b := range boxes {
		attrs := append([]string(nil), b.attrs...)
		if children[b.name] {
			attrs = append(attrs, `\HasChildren`)
		} else {
			attrs = append(attrs, `\HasNoChildren`)
		}
		lines = append(lines, "* LIST ("+strings.Join(attrs, " ")+`) "/" `+quote(account.EncodeUTF7(b.name)))
	}
	for _, l := range lines {
		ss.out(l)
	}
	ss.out(tag + " OK Success")
}

func (ss *session) status(tag string, args []tok) {
	s := ss.s
	if len(args) != 2 {
		ss.out(tag + " BAD STATUS needs a mailbox and items")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.find(account.DecodeUTF7(args[0].text()))
	if b == nil {
		ss.out(tag + " NO [NONEXISTENT] Unknown Mailbox: " + args[0].text())
		return
	}
	msgs := s.view(b)
	var items []string
	for _, it := range args[1].list {
		switch strings.ToUpper(it.atom) {
		case "MESSAGES":
			items = append(items, fmt.Sprintf("MESSAGES %d", len(msgs)))
		case "UIDNEXT":
			items = append(items, fmt.Sprintf("UIDNEXT %d", b.uidNext))
		case "UIDVALIDITY":
			items = append(items, fmt.Sprintf("UIDVALIDITY %d", b.uidValidity))
		case "UNSEEN":
			n := 0
			for _, m := range msgs {
				if !m.Flags[`\Seen`] {
					n++
				}
			}
			items = append(items, fmt.Sprintf("UNSEEN %d", n))
		case "RECENT":
			items = append(items, "RECENT 0")
		}
	}
	ss.out("* STATUS " + quote(account.EncodeUTF7(b.name)) + " (" + strings.Join(items, " ") + ")")
	ss.out(tag + " OK Success")
}

func (ss *session) selectBox(tag string, args []tok, readOnly bool) {
	s := ss.s
	if len(args) < 1 {
		ss.out(tag + " BAD SELECT needs a mailbox")
		return
	}
	s.mu.Lock()
	b := s.find(account.DecodeUTF7(args[0].text()))
	var n int
	if b != nil {
		n = len(s.view(b))
	}
	s.mu.Unlock()
	if b == nil {
		ss.sel = nil
		ss.out(tag + " NO [NONEXISTENT] Unknown Mailbox: " + args[0].text() + " (Failure)")
		return
	}
	ss.sel, ss.readOnly = b, readOnly
	ss.out(`* FLAGS (\Answered \Flagged \Draft \Deleted \Seen $NotPhishing $Phishing)`)
	ss.out(`* OK [PERMANENTFLAGS (\Answered \Flagged \Draft \Deleted \Seen $NotPhishing $Phishing \*)] Flags permitted.`)
	ss.out(fmt.Sprintf("* OK [UIDVALIDITY %d] UIDs valid.", b.uidValidity))
	ss.out(fmt.Sprintf("* %d EXISTS", n))
	ss.out("* 0 RECENT")
	ss.out(fmt.Sprintf("* OK [UIDNEXT %d] Predicted next UID.", b.uidNext))
	if readOnly {
		ss.out(tag + " OK [READ-ONLY] " + b.name + " selected. (Success)")
	} else {
		ss.out(tag + " OK [READ-WRITE] " + b.name + " selected. (Success)")
	}
}

// uidSet parses a UID set ("1:*,5") against the highest UID.
func uidSet(spec string, max uint32) func(uint32) bool {
	type rng struct{ lo, hi uint32 }
	var rs []rng
	num := func(x string) uint32 {
		if x == "*" {
			return max
		}
		n, _ := strconv.ParseUint(x, 10, 32)
		return uint32(n)
	}
	for _, part := range strings.Split(spec, ",") {
		lo, hi, ok := strings.Cut(part, ":")
		a := num(lo)
		b := a
		if ok {
			b = num(hi)
		}
		if a > b {
			a, b = b, a
		}
		rs = append(rs, rng{a, b})
	}
	return func(u uint32) bool {
		for _, r := range rs {
			if u >= r.lo && u <= r.hi {
				return true
			}
		}
		return false
	}
}

func (ss *session) search(tag string, args []tok) {
	s := ss.s
	s.mu.Lock()
	msgs := s.view(ss.sel)
	var max uint32
	if len(msgs) > 0 {
		max = msgs[len(msgs)-1].uids[ss.sel.key]
	}
	match := func(uint32) bool { return true }
	for i := 0; i < len(args); i++ {
		a := strings.ToUpper(args[i].atom)
		switch {
		case a == "UID" && i+1 < len(args):
			match = uidSet(args[i+1].atom, max)
			i++
		case a == "X-GM-MSGID" && i+1 < len(args):
			id, _ := strconv.ParseUint(args[i+1].text(), 10, 64)
			prev := match
			match = func(u uint32) bool {
				for _, m := range msgs {
					if m.uids[ss.sel.key] == u {
						return prev(u) && m.MsgID == id
					}
				}
				return false
			}
			i++
		}
	}
	var out []string
	for _, m := range msgs {
		if u := m.uids[ss.sel.key]; match(u) {
			out = append(out, strconv.FormatUint(uint64(u), 10))
		}
	}
	s.mu.Unlock()
	if len(out) > 0 {
		ss.out("* SEARCH " + strings.Join(out, " "))
	} else {
		ss.out("* SEARCH")
	}
	ss.out(tag + " OK SEARCH completed (Success)")
}

// labelsOf formats X-GM-LABELS: the internal \Spam and \Trash are not shown.
func labelsOf(m *Message) string {
	var ls []string
	for l := range m.Labels {
		if l == `\Spam` || l == `\Trash` {
			continue
		}
		if strings.HasPrefix(l, `\`) {
			ls = append(ls, l)
		} else {
			ls = append(ls, quote(account.EncodeUTF7(l)))
		}
	}
	sort.Strings(ls)
	return "(" + strings.Join(ls, " ") + ")"
}

func flagsOf(m *Message) string {
	var fs []string
	for f := range m.Flags {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	return "(" + strings.Join(fs, " ") + ")"
}

// quota is the [OVERQUOTA] answer Gmail gives once a daily cap is used up.
const quota = "NO [OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)"

func (ss *session) fetch(tag string, args []tok) {
	s := ss.s
	if len(args) < 2 {
		ss.out(tag + " BAD FETCH needs a set and items")
		return
	}
	items := args[1].list
	if !args[1].isL {
		items = args[1:2]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs := s.view(ss.sel)
	var max uint32
	if len(msgs) > 0 {
		max = msgs[len(msgs)-1].uids[ss.sel.key]
	}
	match := uidSet(args[0].atom, max)
	for _, it := range items {
		if strings.EqualFold(it.atom, "X-GM-MSGID") {
			s.metaFetches++
		}
	}
	for seq, m := range msgs {
		uid := m.uids[ss.sel.key]
		if !match(uid) {
			continue
		}
		parts := []string{fmt.Sprintf("UID %d", uid)}
		var lit []byte
		var litName string
		for _, it := range items {
			name := strings.ToUpper(it.atom)
			switch {
			case name == "UID":
			case name == "FLAGS":
				parts = append(parts, "FLAGS "+flagsOf(m))
			case name == "INTERNALDATE":
				parts = append(parts, `INTERNALDATE "`+m.Date.Format("02-Jan-2006 15:04:05 -0700")+`"`)
			case name == "RFC822.SIZE":
				parts = append(parts, fmt.Sprintf("RFC822.SIZE %d", len(m.Body)))
			case name == "X-GM-MSGID":
				parts = append(parts, fmt.Sprintf("X-GM-MSGID %d", m.MsgID))
			case name == "X-GM-THRID":
				parts = append(parts, fmt.Sprintf("X-GM-THRID %d", m.ThrID))
			case name == "X-GM-LABELS":
				parts = append(parts, "X-GM-LABELS "+labelsOf(m))
			case name == "BODY.PEEK[]" || name == "BODY[]" || name == "RFC822":
				if s.o.DownloadCap > 0 && s.bytesServed+int64(len(m.Body)) > s.o.DownloadCap {
					if s.o.ByeOnCap {
						ss.bw.Flush()
						ss.out("* BYE [UNAVAILABLE] Account exceeded its bandwidth limits. Try again later.")
						ss.c.Close()
						return
					}
					ss.out(tag + " " + quota)
					return
				}
				s.bytesServed += int64(len(m.Body))
				s.served[m.MsgID]++
				lit, litName = m.Body, "BODY[]"
				if name == "RFC822" {
					litName = "RFC822"
				}
			case strings.HasPrefix(name, "BODY.PEEK[HEADER.FIELDS") || strings.HasPrefix(name, "BODY[HEADER.FIELDS"):
				// one field list, as mailmove asks: BODY.PEEK[HEADER.FIELDS (X)]
				open, close := strings.Index(it.atom, "("), strings.Index(it.atom, ")")
				var fields []string
				if open > 0 && close > open {
					for _, f := range strings.Fields(it.atom[open+1 : close]) {
						fields = append(fields, strings.Trim(f, `"`))
					}
				}
				lit = headerFields(m.Body, fields)
				litName = "BODY[HEADER.FIELDS (" + strings.ToUpper(strings.Join(fields, " ")) + ")]"
			case name == "BODY.PEEK[HEADER]" || name == "BODY[HEADER]":
				lit = header(m.Body)
				litName = "BODY[HEADER]"
			}
		}
		head := fmt.Sprintf("* %d FETCH (%s", seq+1, strings.Join(parts, " "))
		if litName != "" {
			ss.bw.WriteString(fmt.Sprintf("%s %s {%d}\r\n", head, litName, len(lit)))
			ss.bw.Write(lit)
			ss.bw.WriteString(")\r\n")
		} else {
			ss.bw.WriteString(head + ")\r\n")
		}
	}
	ss.bw.Flush()
	if isMeta(items) && s.o.ThrottleMeta != 0 {
		if s.o.ThrottleMeta > 0 {
			s.o.ThrottleMeta--
		}
		ss.out(tag + " OK [THROTTLED] Success")
		return
	}
	if lit := litNames(items); lit && s.o.Throttle != 0 {
		if s.o.Throttle > 0 {
			s.o.Throttle--
		}
		ss.out(tag + " OK [THROTTLED] Success")
		return
	}
	ss.out(tag + " OK Success")
}

// isMeta reports whether a FETCH asks for X-GM-MSGID.
func isMeta(items []tok) bool {
	for _, it := range items {
		if strings.EqualFold(it.atom, "X-GM-MSGID") {
			return true
		}
	}
	return false
}

// litNames reports whether a FETCH asks for bodies.
func litNames(items []tok) bool {
	for _, it := range items {
		switch strings.ToUpper(it.atom) {
		case "BODY.PEEK[]", "BODY[]", "RFC822":
			return true
		}
	}
	return false
}

func header(body []byte) []byte {
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		return body[:i+4]
	}
	return body
}

func headerFields(body []byte, fields []string) []byte {
	var out bytes.Buffer
	keep := false
	for _, line := range strings.SplitAfter(string(header(body)), "\r\n") {
		if line == "\r\n" || line == "" {
			break
		}
		if line[0] != ' ' && line[0] != '\t' {
			name, _, _ := strings.Cut(line, ":")
			keep = false
			for _, f := range fields {
				if strings.EqualFold(strings.TrimSpace(name), f) {
					keep = true
				}
			}
		}
		if keep {
			out.WriteString(line)
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}

func (ss *session) store(tag string, args []tok) {
	s := ss.s
	if len(args) < 3 {
		ss.out(tag + " BAD STORE needs a set, an item and values")
		return
	}
	if ss.readOnly {
		ss.out(tag + " NO STORE attempt on READ-ONLY folder (Failure)")
		return
	}
	item := strings.ToUpper(args[1].atom)
	silent := strings.HasSuffix(item, ".SILENT")
	item = strings.TrimSuffix(item, ".SILENT")
	var vals []string
	if args[2].isL {
		for _, t := range args[2].list {
			vals = append(vals, labelName(t.text()))
		}
	} else {
		for _, t := range args[2:] {
			vals = append(vals, labelName(t.text()))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	msgs := s.view(ss.sel)
	var max uint32
	if len(msgs) > 0 {
		max = msgs[len(msgs)-1].uids[ss.sel.key]
	}
	match := uidSet(args[0].atom, max)
	var changed []*Message
	var seqs []int
	for seq, m := range msgs {
		if !match(m.uids[ss.sel.key]) {
			continue
		}
		switch item {
		case "+X-GM-LABELS", "-X-GM-LABELS", "X-GM-LABELS":
			if item == "X-GM-LABELS" {
				for l := range m.Labels {
					if l != `\Spam` && l != `\Trash` {
						delete(m.Labels, l)
					}
				}
			}
			for _, v := range vals {
				if strings.HasPrefix(item, "-") {
					delete(m.Labels, v)
				} else {
					m.Labels[v] = true
				}
			}
			m.Flags[`\Flagged`] = m.Labels[`\Starred`]
			if !m.Flags[`\Flagged`] {
				delete(m.Flags, `\Flagged`)
			}
		case "+FLAGS", "-FLAGS", "FLAGS":
			if item == "FLAGS" {
				m.Flags = map[string]bool{}
			}
			for _, v := range vals {
				if strings.HasPrefix(item, "-") {
					delete(m.Flags, v)
				} else {
					m.Flags[v] = true
				}
			}
			if m.Flags[`\Flagged`] {
				m.Labels[`\Starred`] = true
			} else {
				delete(m.Labels, `\Starred`)
			}
		default:
			ss.out(tag + " BAD unknown STORE item " + item)
			return
		}
		changed = append(changed, m)
		seqs = append(seqs, seq+1)
	}
	if strings.HasSuffix(item, "X-GM-LABELS") {
		s.labelStores++
	}
	for i, m := range changed {
		if silent {
			continue
		}
		if strings.HasSuffix(item, "X-GM-LABELS") {
			ss.out(fmt.Sprintf("* %d FETCH (X-GM-LABELS %s UID %d)", seqs[i], labelsOf(m), m.uids[ss.sel.key]))
		} else {
			ss.out(fmt.Sprintf("* %d FETCH (FLAGS %s UID %d)", seqs[i], flagsOf(m), m.uids[ss.sel.key]))
		}
	}
	ss.out(tag + " OK Success")
}

func messageID(body []byte) string {
	v := string(headerFields(body, []string{"Message-ID"}))
	_, v, _ = strings.Cut(v, ":")
	return strings.Trim(strings.TrimSpace(strings.ReplaceAll(v, "\r\n", "")), "<>")
}

func (ss *session) appendMsg(tag string, args []tok) {
	s := ss.s
	if len(args) < 2 {
		ss.out(tag + " BAD APPEND needs a mailbox and a message")
		return
	}
	body := args[len(args)-1]
	if body.str == nil {
		ss.out(tag + " BAD APPEND needs a literal")
		return
	}
	var flags []string
	date := time.Now()
	for _, a := range args[1 : len(args)-1] {
		if a.isL {
			for _, f := range a.list {
				flags = append(flags, f.atom)
			}
		} else if a.str != nil {
			if d, err := time.Parse("2-Jan-2006 15:04:05 -0700", strings.TrimSpace(*a.str)); err == nil {
				date = d
			}
		}
	}
	data := []byte(*body.str)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.find(account.DecodeUTF7(args[0].text()))
	if b == nil {
		ss.out(tag + " NO [TRYCREATE] Folder doesn't exist. (Failure)")
		return
	}
	if int64(len(data)) > s.o.AppendLimit {
		ss.out(tag + " NO [TOOBIG] Message too large. (Failure)")
		return
	}
	if s.o.UploadCap > 0 && s.bytesAppended+int64(len(data)) > s.o.UploadCap {
		ss.out(tag + " " + quota)
		return
	}
	s.bytesAppended += int64(len(data))
	s.appends++
	label := labelOf(b)
	// Gmail drops an APPEND of a message it already holds (same
	// Message-ID): the one it has gets the mailbox's label.
	if id := messageID(data); id != "" {
		for _, m := range s.msg {
			if messageID(m.Body) == id {
				if label != "" {
					m.Labels[label] = true
				}
				s.view(b)
				ss.out(fmt.Sprintf("%s OK [APPENDUID %d %d] (Success)", tag, b.uidValidity, m.uids[b.key]))
				return
			}
		}
	}
	var labels []string
	if label != "" {
		labels = []string{label}
	}
	s.add(data, date, 0, labels, flags)
	s.view(b)
	m := s.msg[len(s.msg)-1]
	ss.out(fmt.Sprintf("%s OK [APPENDUID %d %d] (Success)", tag, b.uidValidity, m.uids[b.key]))
}

// labelName decodes a label of STORE X-GM-LABELS: system labels as they
// are, user labels from modified UTF-7, as Gmail sends and takes them.
func labelName(s string) string {
	if strings.HasPrefix(s, `\`) {
		return s
	}
	return account.DecodeUTF7(s)
}
