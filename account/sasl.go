package account

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// TokenSource gives the OAuth2 access tokens of an account (see
// account/oauth, and --from-oauth-token-cmd).
type TokenSource interface {
	// AccessToken returns an access token. With fresh set, the server has
	// just refused the last one: the source must get a new one (refresh)
	// rather than hand out the same again.
	AccessToken(ctx context.Context, fresh bool) (string, error)
}

// ErrNoOAuthMechanism says the server announces neither AUTH=XOAUTH2 nor
// AUTH=OAUTHBEARER, so an OAuth2 token cannot be used with it.
var ErrNoOAuthMechanism = errors.New("the server announces neither AUTH=XOAUTH2 nor AUTH=OAUTHBEARER: it takes no OAuth2 token")

// OAuthError is the server refusing an OAuth2 access token in
// AUTHENTICATE.
type OAuthError struct {
	// Mechanism is XOAUTH2 or OAUTHBEARER.
	Mechanism string
	// Status is the "status" of the server's JSON challenge ("401", "400"),
	// if it sent one.
	Status string
	// Scope is the "scope" the server said the token needs, if any.
	Scope string
	// Text is the server's NO (or BAD) answer.
	Text string
}

func (e *OAuthError) Error() string {
	s := "the server refused the OAuth2 access token (AUTHENTICATE " + e.Mechanism
	if e.Status != "" {
		s += ", status " + e.Status
	}
	s += ")"
	if e.Text != "" {
		s += ": " + e.Text
	}
	return s
}

// xoauth2Response is the initial response of XOAUTH2 (Google's and
// Microsoft's mechanism).
func xoauth2Response(user, token string) []byte {
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

// oauthBearerResponse is the initial response of OAUTHBEARER (RFC 7628).
func oauthBearerResponse(user, host string, port int, token string) []byte {
	return []byte("n,a=" + strings.NewReplacer("=", "=3D", ",", "=2C").Replace(user) + ",\x01host=" + host + "\x01port=" + strconv.Itoa(port) + "\x01auth=Bearer " + token + "\x01\x01")
}

// rawIMAP speaks the few commands mailmove sends before go-imap takes a
// connection over (STARTTLS, CAPABILITY, AUTHENTICATE), logging them to
// debug with credentials redacted.
type rawIMAP struct {
	br    *bufio.Reader
	w     io.Writer
	debug io.Writer
	n     int
}

func newRawIMAP(r io.Reader, w io.Writer, debug io.Writer) *rawIMAP {
	return &rawIMAP{br: bufio.NewReader(r), w: w, debug: debug}
}

func (rc *rawIMAP) log(line string) {
	if rc.debug != nil {
		io.WriteString(rc.debug, line+"\r\n")
	}
}

func (rc *rawIMAP) readLine() (string, error) {
	l, err := rc.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	l = strings.TrimRight(l, "\r\n")
	rc.log(l)
	return l, nil
}

// send writes one line; shown is what the debug log gets instead.
func (rc *rawIMAP) send(line, shown string) error {
	rc.log(shown)
	if _, err := io.WriteString(rc.w, line+"\r\n"); err != nil {
		return err
	}
	if f, ok := rc.w.(interface{ Flush() error }); ok {
		return f.Flush()
	}
	return nil
}

func (rc *rawIMAP) tag() string {
	rc.n++
	return "O" + strconv.Itoa(rc.n)
}

// greeting reads the server's greeting.
func (rc *rawIMAP) greeting() error {
	l, err := rc.readLine()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(strings.ToUpper(l), "* OK") {
		return fmt.Errorf("unexpected greeting %q", l)
	}
	return nil
}

// command sends one command and returns its untagged lines, or the
// server's refusal as an error.
func (rc *rawIMAP) command(c string) ([]string, error) {
	tag := rc.tag()
	if err := rc.send(tag+" "+c, tag+" "+c); err != nil {
		return nil, err
	}
	var untagged []string
	for {
		l, err := rc.readLine()
		if err != nil {
			return nil, err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(strings.ToUpper(rest), "OK") {
				return nil, &refusedError{text: rest}
			}
			return untagged, nil
		}
		untagged = append(untagged, l)
	}
}

// refusedError is the server's NO or BAD to a command of rawIMAP.
type refusedError struct{ text string }

func (e *refusedError) Error() string { return e.text }

// capabilities asks CAPABILITY and returns the set, upper-cased.
func (rc *rawIMAP) capabilities() (map[string]bool, error) {
	lines, err := rc.command("CAPABILITY")
	if err != nil {
		return nil, err
	}
	caps := map[string]bool{}
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(strings.ToUpper(l), "* CAPABILITY "); ok {
			for _, c := range strings.Fields(rest) {
				caps[c] = true
			}
		}
	}
	return caps, nil
}

// authenticate runs AUTHENTICATE mech with the initial response ir. On a
// refusal the server first sends a challenge (base64 JSON with a status);
// the client must answer it (an empty line for XOAUTH2, ^A for
// OAUTHBEARER) before the server says NO. That answer is given here, on
// any connection, so the command never hangs.
func (rc *rawIMAP) authenticate(mech string, ir []byte, saslIR bool) error {
	tag := rc.tag()
	enc := base64.StdEncoding.EncodeToString(ir)
	line := tag + " AUTHENTICATE " + mech
	if saslIR {
		line += " " + enc
	}
	if err := rc.send(line, tag+" AUTHENTICATE "+mech+" [credentials redacted]"); err != nil {
		return err
	}
	sent := saslIR
	challenged := false
	oe := &OAuthError{Mechanism: mech}
	for {
		l, err := rc.readLine()
		if err != nil {
			if challenged {
				// some servers hang up after a refusal
				oe.Text = "the server closed the connection after refusing the token"
				return oe
			}
			return err
		}
		switch {
		case strings.HasPrefix(l, "+"):
			ch := strings.TrimSpace(strings.TrimPrefix(l, "+"))
			if !sent && ch == "" {
				if err := rc.send(enc, "[credentials redacted]"); err != nil {
					return err
				}
				sent = true
				continue
			}
			// An error challenge: note what it says, answer so that the
			// server can say NO.
			challenged = true
			if b, err := base64.StdEncoding.DecodeString(ch); err == nil {
				var j struct {
					Status string `json:"status"`
					Scope  string `json:"scope"`
				}
				if json.Unmarshal(b, &j) == nil {
					oe.Status, oe.Scope = j.Status, j.Scope
				}
			}
			answer := ""
			if mech == "OAUTHBEARER" {
				answer = base64.StdEncoding.EncodeToString([]byte{1})
			}
			if err := rc.send(answer, answer); err != nil {
				oe.Text = "the server closed the connection after refusing the token"
				return oe
			}
		case strings.HasPrefix(l, tag+" "):
			rest := strings.TrimPrefix(l, tag+" ")
			if strings.HasPrefix(strings.ToUpper(rest), "OK") {
				return nil
			}
			oe.Text = rest
			return oe
		}
	}
}

// oauthLogin signs in on rc with an OAuth2 token from cfg.Token (a
// fresh one if fresh is set): XOAUTH2 where announced, else OAUTHBEARER.
// A refused token is an *OAuthError, unwrapped, for oauthRetry.
func (cfg *Config) oauthLogin(ctx context.Context, rc *rawIMAP, fresh bool) error {
	u := cfg.URL
	if cfg.Token == nil {
		return fmt.Errorf("%s signs in with OAuth2 (auth=%s) but no token source is set", u, u.Auth)
	}
	caps, err := rc.capabilities()
	if err != nil {
		return &ConnectError{Op: "CAPABILITY with", Addr: u.Addr(), Err: err}
	}
	var mech string
	switch {
	case caps["AUTH=XOAUTH2"]:
		mech = "XOAUTH2"
	case caps["AUTH=OAUTHBEARER"]:
		mech = "OAUTHBEARER"
	default:
		return &ConnectError{Op: "login to", Addr: u.Addr(), Err: ErrNoOAuthMechanism,
			Hint: "Is this the right server? For a password (or app password) use ?auth=password instead."}
	}
	cfg.status("")
	tok, err := cfg.Token.AccessToken(ctx, fresh)
	if err != nil {
		return err
	}
	if strings.ContainsAny(tok, "\r\n\x00\x01") || strings.ContainsAny(u.User, "\r\n\x00\x01") {
		return errors.New("the OAuth2 access token or user name holds control characters; it cannot be sent")
	}
	cfg.status("signing in to %s as %s (%s)", u.Addr(), u.User, mech)
	ir := xoauth2Response(u.User, tok)
	if mech == "OAUTHBEARER" {
		ir = oauthBearerResponse(u.User, u.Host, u.Port, tok)
	}
	err = rc.authenticate(mech, ir, caps["SASL-IR"])
	var oe *OAuthError
	if err != nil && !errors.As(err, &oe) {
		return &ConnectError{Op: "login to", Addr: u.Addr(), Err: err}
	}
	return err
}

// preauthConn hands a connection signed in by rawIMAP to go-imap: it
// reads a PREAUTH greeting made here (the server's was read already),
// then what the server sends next, including what rawIMAP buffered.
func preauthConn(conn net.Conn, rc *rawIMAP) net.Conn {
	return &replayConn{Conn: conn, r: io.MultiReader(strings.NewReader("* PREAUTH [mailmove] signed in with OAuth2\r\n"), rc.br)}
}

// dialRaw connects and secures a connection that mailmove speaks IMAP on
// itself (the APPEND connection, Gmail's metadata connection): implicit
// TLS, or STARTTLS, refused when the server sends anything between its
// STARTTLS answer and the handshake (those bytes would not be protected).
// It reads the greeting and returns the TCP connection (to close), the
// secured one, a reader on it past the greeting, and the password (empty
// for an OAuth2 account). Signing in is the caller's.
func (cfg *Config) dialRaw(ctx context.Context) (raw, sc net.Conn, br *bufio.Reader, pw string, err error) {
	u := cfg.URL
	raw, conn, pw, err := cfg.connect(ctx)
	if err != nil {
		return nil, nil, nil, "", err
	}
	fail := func(err error) (net.Conn, net.Conn, *bufio.Reader, string, error) {
		raw.Close()
		return nil, nil, nil, "", err
	}
	var tc *tls.Config
	if u.Security != Plaintext {
		if tc, err = cfg.tlsConfig(); err != nil {
			return fail(err)
		}
	}
	if u.Security == ImplicitTLS {
		t := tls.Client(conn, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return fail(cfg.tlsError(err))
		}
		conn = t
	}
	rc := newRawIMAP(conn, conn, cfg.Debug)
	if err := rc.greeting(); err != nil {
		return fail(&ConnectError{Op: "greeting from", Addr: u.Addr(), Err: err})
	}
	if u.Security == StartTLS {
		if _, err := rc.command("STARTTLS"); err != nil {
			return fail(&ConnectError{Op: "STARTTLS with", Addr: u.Addr(), Err: err})
		}
		if rc.br.Buffered() > 0 {
			return fail(&ConnectError{Op: "STARTTLS with", Addr: u.Addr(), Err: errors.New("the server sent data after its STARTTLS answer, before TLS began; refusing the connection (something on the path may be tampering with it)")})
		}
		t := tls.Client(conn, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return fail(cfg.tlsError(err))
		}
		conn = t
		rc.br = bufio.NewReader(conn)
	}
	return raw, conn, rc.br, pw, nil
}
