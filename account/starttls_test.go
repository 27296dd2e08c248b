package account

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
)

// A server (or something on the path) that sends bytes after its STARTTLS
// answer, before the handshake, is refused by the APPEND connection: those
// bytes were not protected by TLS.
func TestAppenderStartTLSInjection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		c.Write([]byte("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"))
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			tag, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch strings.ToUpper(rest) {
			case "CAPABILITY":
				c.Write([]byte("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + " OK done\r\n"))
			case "STARTTLS":
				// the answer and an injected line in one write
				c.Write([]byte(tag + " OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"))
				br.ReadString('\n')
				return
			default:
				c.Write([]byte(tag + " BAD what\r\n"))
			}
		}
	}()
	u, err := ParseURL("imap://me@" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MM_TEST_PW", "pw")
	_, err = (&Config{URL: u, Password: PasswordSource{Env: "MM_TEST_PW"}}).DialAppender(context.Background())
	if err == nil || !strings.Contains(err.Error(), "before TLS began") {
		t.Fatalf("got %v, want the connection refused for data before TLS", err)
	}
}
