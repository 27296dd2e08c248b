package gmailstub

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// client is a line client for the stand-in's own tests.
type client struct {
	t  *testing.T
	br *bufio.Reader
	c  *tls.Conn
	n  int
}

func dial(t *testing.T, s *Server) *client {
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", s.Addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, br: bufio.NewReader(c), c: c}
	cl.line() // greeting
	return cl
}

func (c *client) line() string {
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *client) send(s string) { fmt.Fprintf(c.c, "%s\r\n", s) }

// cmd sends a command and returns the untagged lines and the tagged one.
func (c *client) cmd(s string) ([]string, string) {
	c.n++
	tag := fmt.Sprintf("a%d", c.n)
	c.send(tag + " " + s)
	var lines []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return lines, strings.TrimPrefix(l, tag+" ")
		}
		lines = append(lines, l)
	}
}

func TestXOAUTH2(t *testing.T) {
	s, err := Start(t.TempDir(), Options{User: "me@gmail.com", Token: "tok-123"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ir := func(tok string) string {
		return base64.StdEncoding.EncodeToString([]byte("user=me@gmail.com\x01auth=Bearer " + tok + "\x01\x01"))
	}
	c := dial(t, s)
	if _, st := c.cmd("AUTHENTICATE XOAUTH2 " + ir("tok-123")); !strings.HasPrefix(st, "OK") {
		t.Fatalf("good token: %s", st)
	}
	// a bad token: the JSON challenge, an empty line, then NO
	c = dial(t, s)
	c.send("b1 AUTHENTICATE XOAUTH2 " + ir("stale"))
	ch := c.line()
	js, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ch, "+ "))
	if !strings.HasPrefix(ch, "+ ") || err != nil || !strings.Contains(string(js), `"status":"400"`) {
		t.Fatalf("challenge %q (%s)", ch, js)
	}
	c.send("")
	if st := c.line(); !strings.HasPrefix(st, "b1 NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("after the empty line: %s", st)
	}
	if _, st := c.cmd("LIST \"\" \"*\""); !strings.HasPrefix(st, "BAD") {
		t.Fatalf("LIST before login: %s", st)
	}
}

func TestModel(t *testing.T) {
	s, err := Start(t.TempDir(), Options{User: "me@gmail.com", Password: "pw", Names: German, DownloadCap: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	id := s.Add(Mail("a@x", "a", 200), d, 0, []string{`\Inbox`, "Work/Deep"})
	c := dial(t, s)
	if _, st := c.cmd(`LOGIN "me@gmail.com" "pw"`); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	list, _ := c.cmd(`LIST "" "*"`)
	all := strings.Join(list, "\n")
	for _, want := range []string{`(\HasChildren \Noselect) "/" "[Google Mail]"`, `(\Sent \HasNoChildren) "/" "[Google Mail]/Gesendet"`,
		`(\All \HasNoChildren) "/" "[Google Mail]/Alle Nachrichten"`, `(\HasChildren) "/" "Work"`, `"Work/Deep"`} {
		if !strings.Contains(all, want) {
			t.Errorf("LIST lacks %s:\n%s", want, all)
		}
	}
	// the same message in INBOX and in its label, with its X-GM items
	for _, box := range []string{"INBOX", "Work/Deep", "[Google Mail]/Alle Nachrichten"} {
		c.cmd(`EXAMINE "` + box + `"`)
		lines, st := c.cmd("UID FETCH 1:* (UID X-GM-MSGID X-GM-LABELS)")
		if len(lines) != 1 || !strings.Contains(lines[0], fmt.Sprintf("X-GM-MSGID %d", id)) || !strings.Contains(lines[0], `X-GM-LABELS ("Work/Deep" \Inbox)`) {
			t.Errorf("%s: %q %s", box, lines, st)
		}
	}
	// a label given by STORE makes the message appear in that mailbox
	c.cmd(`SELECT "INBOX"`)
	if _, st := c.cmd(`UID STORE 1 +X-GM-LABELS (\Important "Neu")`); !strings.HasPrefix(st, "OK") {
		t.Fatal(st)
	}
	if lines, _ := c.cmd(`STATUS "Neu" (MESSAGES)`); len(lines) != 1 || !strings.Contains(lines[0], "MESSAGES 1") {
		t.Errorf("Neu: %q", lines)
	}
	// an APPEND of a message Gmail holds is dropped (the label is added)
	body := string(Mail("a@x", "a", 200))
	c.send(fmt.Sprintf(`p1 APPEND "Projekte" (\Seen) {%d}`, len(body)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND to a missing folder: %s", l)
	}
	c.send(body)
	if l := c.line(); !strings.Contains(l, "TRYCREATE") {
		t.Fatalf("APPEND to a missing folder: %s", l)
	}
	c.cmd(`CREATE "Projekte"`)
	c.send(fmt.Sprintf(`p2 APPEND "Projekte" (\Seen) {%d}`, len(body)))
	c.line()
	c.send(body)
	if l := c.line(); !strings.HasPrefix(l, "p2 OK [APPENDUID") {
		t.Fatalf("APPEND: %s", l)
	}
	if n := len(s.Messages()); n != 1 {
		t.Fatalf("%d messages after a duplicate APPEND, want 1", n)
	}
	if !s.Messages()[0].Labels["Projekte"] {
		t.Errorf("labels %v", s.Messages()[0].Labels)
	}
	// the download cap: [OVERQUOTA] once it is used up
	c.cmd(`EXAMINE "INBOX"`)
	for i := 0; i < 10; i++ {
		_, st := c.cmd("UID FETCH 1 (BODY.PEEK[])")
		if strings.Contains(st, "[OVERQUOTA]") {
			if got := s.Stats().BytesServed; got > 1000 || i == 0 {
				t.Fatalf("cap hit after %d fetches, %d bytes", i, got)
			}
			return
		}
	}
	t.Fatal("no [OVERQUOTA] after 10 fetches over a cap of 1000 bytes")
}

// TestGmailConnDebugRedacted: mailmove's own Gmail connection logs the
// conversation with --debug-imap, the LOGIN redacted.
func TestGmailConnDebugRedacted(t *testing.T) {
	s := StartT(t, Options{})
	s.Add(Mail("d@x", "d", 100), time.Now(), 0, []string{`\Inbox`})
	cfg := s.Config(t)
	var log strings.Builder
	cfg.Debug = &log
	g, err := cfg.DialGmail(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Examine("[Gmail]/All Mail"); err != nil {
		t.Fatal(err)
	}
	ms, err := g.FetchMeta()
	if err != nil || len(ms) != 1 || ms[0].MsgID == 0 || !slices.Equal(ms[0].Labels, []string{`\Inbox`}) {
		t.Fatalf("%+v %v", ms, err)
	}
	g.Close()
	l := log.String()
	if strings.Contains(l, Password) || !strings.Contains(l, "LOGIN [credentials redacted]") || !strings.Contains(l, "X-GM-MSGID") {
		t.Fatalf("debug log:\n%s", l)
	}
}
