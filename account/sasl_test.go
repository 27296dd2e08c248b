package account

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailmove/mailmove/account/oauth/oauthtest"
)

// staticTokens hands out tokens in order: the first for a normal ask, the
// next ones for each fresh ask.
type staticTokens struct {
	mu     sync.Mutex
	tokens []string
	i      int
	fresh  int
	calls  int
}

func (s *staticTokens) AccessToken(_ context.Context, fresh bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if fresh {
		s.fresh++
		if s.i < len(s.tokens)-1 {
			s.i++
		}
	}
	return s.tokens[s.i], nil
}

// oauthServer starts an OAuth-only memserver checked against a fake
// authorisation server, and returns it with a CA file for it.
func oauthServer(t *testing.T, implicit bool, mechs ...string) (*MemServer, *oauthtest.Server, string) {
	t.Helper()
	as := oauthtest.New("client", "")
	t.Cleanup(as.Close)
	tc, caPEM, err := oauthtest.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, caPEM, 0o600)
	srv, err := ServeMemoryOAuth("me@example.com", tc, OAuthServerOptions{Mechanisms: mechs, Valid: as.Valid, ImplicitTLS: implicit, Scope: "https://mail.google.com/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, as, ca
}

func oauthConfig(t *testing.T, srv *MemServer, implicit bool, ca string, ts TokenSource) *Config {
	t.Helper()
	scheme := "imap"
	if implicit {
		scheme = "imaps"
	}
	u, err := ParseURL(scheme + "://me@example.com@" + srv.Addr + "?auth=google")
	if err != nil {
		t.Fatal(err)
	}
	return &Config{URL: u, CAFile: ca, Token: ts}
}

// TestOAuthSignIn signs in with XOAUTH2 and OAUTHBEARER, on implicit TLS
// and STARTTLS; a refused token is answered (no hang) and asked for once
// more, fresh; a second refusal is an *OAuthError.
func TestOAuthSignIn(t *testing.T) {
	for _, implicit := range []bool{true, false} {
		for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
			name := mech + "/starttls"
			if implicit {
				name = mech + "/implicit"
			}
			t.Run(name, func(t *testing.T) {
				srv, as, ca := oauthServer(t, implicit, mech)
				good, _ := as.Issue()
				var dbg bytes.Buffer
				// first token stale: refused, then the fresh one works
				ts := &staticTokens{tokens: []string{"at-stale", good}}
				cfg := oauthConfig(t, srv, implicit, ca, ts)
				cfg.Debug = &dbg
				c, err := cfg.Dial(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.List("", "*", nil).Collect(); err != nil {
					t.Fatal(err)
				}
				c.Close()
				if ts.fresh != 1 {
					t.Errorf("fresh token asked %d times, want 1", ts.fresh)
				}
				log := dbg.String()
				if strings.Contains(log, good) || strings.Contains(log, "at-stale") || strings.Contains(log, base64.StdEncoding.EncodeToString(xoauth2Response("me@example.com", good))[:20]) {
					t.Errorf("token in the debug log:\n%s", log)
				}
				if !strings.Contains(log, "AUTHENTICATE "+mech+" [credentials redacted]") {
					t.Errorf("debug log lacks the redacted AUTHENTICATE:\n%s", log)
				}

				// both refused: OAuthError, wrapped in a ConnectError
				cfg = oauthConfig(t, srv, implicit, ca, &staticTokens{tokens: []string{"at-bad", "at-worse"}})
				_, err = cfg.Dial(context.Background())
				var oe *OAuthError
				var ce *ConnectError
				if !errors.As(err, &oe) || !errors.As(err, &ce) || oe.Mechanism != mech || oe.Status != "401" {
					t.Fatalf("refused token: got %v, want an OAuthError (%s, status 401) in a ConnectError", err, mech)
				}
			})
		}
	}
}

// TestOAuthNoMechanism: a server that takes only passwords gives
// ErrNoOAuthMechanism, before any token is asked for.
func TestOAuthNoMechanism(t *testing.T) {
	tc, caPEM, err := oauthtest.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, caPEM, 0o600)
	srv, err := ServeMemory("me@example.com", "pw", tc, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := &staticTokens{tokens: []string{"x"}}
	_, err = oauthConfig(t, srv, false, ca, ts).Dial(context.Background())
	if !errors.Is(err, ErrNoOAuthMechanism) {
		t.Fatalf("got %v, want ErrNoOAuthMechanism", err)
	}
}

// TestOAuthAppender: the MULTIAPPEND connection signs in with the token too.
func TestOAuthAppender(t *testing.T) {
	for _, implicit := range []bool{true, false} {
		srv, as, ca := oauthServer(t, implicit, "XOAUTH2")
		good, _ := as.Issue()
		cfg := oauthConfig(t, srv, implicit, ca, &staticTokens{tokens: []string{"at-old", good}})
		a, err := cfg.DialAppender(context.Background())
		if err != nil && !errors.Is(err, ErrNoMultiAppend) {
			t.Fatalf("implicit=%v: %v", implicit, err)
		}
		if a != nil {
			a.Close()
		}
		cfg = oauthConfig(t, srv, implicit, ca, &staticTokens{tokens: []string{"at-old"}})
		var oe *OAuthError
		if _, err := cfg.DialAppender(context.Background()); !errors.As(err, &oe) {
			t.Fatalf("implicit=%v: refused token: got %v, want OAuthError", implicit, err)
		}
	}
}

// TestXOAUTH2Exchange checks the bytes on the wire against a scripted
// server without SASL-IR: the initial response after an empty
// continuation, and an empty line (not "=") after the error challenge, as
// Gmail and Microsoft want; the debug log shows neither token nor response.
func TestXOAUTH2Exchange(t *testing.T) {
	cli, srvConn := net.Pipe()
	defer cli.Close()
	challenge := base64.StdEncoding.EncodeToString([]byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`))
	got := make(chan []string, 1)
	go func() {
		defer srvConn.Close()
		br := bufio.NewReader(srvConn)
		var lines []string
		read := func() string {
			l, _ := br.ReadString('\n')
			lines = append(lines, l)
			return l
		}
		read() // AUTHENTICATE
		srvConn.Write([]byte("+ \r\n"))
		read() // initial response
		srvConn.Write([]byte("+ " + challenge + "\r\n"))
		read() // the answer to the challenge
		srvConn.Write([]byte("O1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"))
		got <- lines
	}()
	var dbg bytes.Buffer
	rc := newRawIMAP(cli, cli, &dbg)
	err := rc.authenticate("XOAUTH2", xoauth2Response("me@gmail.com", "ya29.secret"), false)
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Status != "400" || oe.Scope != "https://mail.google.com/" {
		t.Fatalf("got %v, want OAuthError with status 400", err)
	}
	lines := <-got
	want := []string{
		"O1 AUTHENTICATE XOAUTH2\r\n",
		base64.StdEncoding.EncodeToString([]byte("user=me@gmail.com\x01auth=Bearer ya29.secret\x01\x01")) + "\r\n",
		"\r\n",
	}
	for i := range want {
		if i >= len(lines) || lines[i] != want[i] {
			t.Errorf("line %d: got %q, want %q", i, lines, want[i])
		}
	}
	if strings.Contains(dbg.String(), "ya29") || strings.Contains(dbg.String(), want[1][:16]) {
		t.Errorf("credentials in the debug log:\n%s", dbg.String())
	}
}

// TestRedactorAuthenticateContinuation: go-imap's wire log hides the
// client's continuation lines of an AUTHENTICATE, not only its first line.
func TestRedactorAuthenticateContinuation(t *testing.T) {
	var out bytes.Buffer
	r := &redactor{w: &out}
	r.Write([]byte("T1 AUTHENTICATE XOAUTH2\r\n+ \r\ndXNlcj1zZWNyZXQ=\r\n+ eyJzdGF0dXMiOiI0MDEifQ==\r\n\r\nT1 NO failed\r\nT2 CAPABILITY\r\n"))
	s := out.String()
	if strings.Contains(s, "dXNlcj1zZWNyZXQ=") {
		t.Errorf("continuation not redacted:\n%s", s)
	}
	if !strings.Contains(s, "T1 NO failed") || !strings.Contains(s, "T2 CAPABILITY") {
		t.Errorf("lines after the AUTHENTICATE lost:\n%s", s)
	}
}

// TestOAuthHangUpAfterChallenge: a server that closes the connection
// after its error challenge still gives an *OAuthError (so the token is
// tried again, fresh, on a new connection), not a bare EOF.
func TestOAuthHangUpAfterChallenge(t *testing.T) {
	cli, srvConn := net.Pipe()
	defer cli.Close()
	go func() {
		br := bufio.NewReader(srvConn)
		br.ReadString('\n')
		srvConn.Write([]byte("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"))
		srvConn.Close()
	}()
	rc := newRawIMAP(cli, cli, nil)
	err := rc.authenticate("XOAUTH2", xoauth2Response("me", "tok"), true)
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Status != "401" {
		t.Fatalf("got %v, want an OAuthError with status 401", err)
	}
}

// TestOAuthStartTLSRequired: an OAuth2 account on imap:// never sends its
// token in plaintext: a server without STARTTLS is ErrNoStartTLS, and no
// token is asked for.
func TestOAuthStartTLSRequired(t *testing.T) {
	srv, err := ServeMemory("me@example.com", "pw", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	u, _ := ParseURL("imap://me@example.com@" + srv.Addr + "?auth=oauth")
	ts := &staticTokens{tokens: []string{"secret-token"}}
	_, err = (&Config{URL: u, Token: ts}).Dial(context.Background())
	if !errors.Is(err, ErrNoStartTLS) || ts.calls != 0 {
		t.Fatalf("got %v (token asked %d times), want ErrNoStartTLS and no token asked", err, ts.calls)
	}
}
