package account

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Config is everything needed to log in to an account.
type Config struct {
	URL *URL
	// Password gives the password; it is asked once and kept for reconnects.
	Password PasswordSource
	// Token gives OAuth2 access tokens, for URLs with an OAuth2 auth
	// (auth=google, auth=microsoft, auth=oauth).
	Token TokenSource
	// CAFile is a PEM file of certificates to trust instead of the system
	// roots (Proton Mail Bridge's "cert export" output).
	CAFile string
	// Fingerprint pins the server certificate by its SHA-256 (hex, colons
	// allowed); it replaces chain and host name checks.
	Fingerprint string
	// IdleTimeout closes a connection on which nothing moved for this long
	// (default 60 s). It replaces go-imap's fixed deadlines, which cut
	// literals that take more than 5 minutes and never time out a silent
	// server.
	IdleTimeout time.Duration
	// Debug, if set, receives the IMAP conversation with credentials redacted.
	Debug io.Writer
	// Version is sent in the IMAP ID command.
	Version string
	// FlagPrefix is the command line prefix of this account's flags ("from"
	// or "to"), so that hints name the real flag (--from-ca-file); empty
	// gives the generic form (--from-ca-file / --to-ca-file).
	FlagPrefix string
	// Status, if set, is told what Dial is doing ("connecting to ...",
	// "logging in as ..."), for a status line on a terminal; "" while the
	// password may be asked for on the terminal (the line must keep still).
	Status func(string)

	mu       sync.Mutex
	password string
	havePass bool
}

// Conn is a logged-in IMAP connection.
type Conn struct {
	*imapclient.Client
	cfg *Config
	// ServerID is the server's answer to IMAP ID, if it has ID.
	ServerID *imap.IDData
	watch    *wireWatch // nil on STARTTLS connections (go-imap's TLS)
}

// IsBridge reports whether the server said it is Proton Mail Bridge (or
// gluon, the engine inside it) in its ID answer.
func (c *Conn) IsBridge() bool {
	if c.ServerID == nil {
		return false
	}
	s := strings.ToLower(c.ServerID.Name + " " + c.ServerID.Vendor)
	return strings.Contains(s, "proton") || strings.Contains(s, "gluon")
}

// ConnectError is a failure to connect or log in; the run cannot go on.
type ConnectError struct {
	Op   string // "connect", "tls", "login"
	Addr string
	Err  error
	Hint string
}

func (e *ConnectError) Error() string {
	s := fmt.Sprintf("%s %s: %v", e.Op, e.Addr, e.Err)
	if e.Hint != "" {
		s += "\n  " + e.Hint
	}
	return s
}

func (e *ConnectError) Unwrap() error { return e.Err }

// Fingerprint returns the SHA-256 fingerprint of a certificate as colon
// separated upper-case hex, the way openssl prints it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

func (cfg *Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: cfg.URL.Host, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if cfg.Fingerprint != "" {
		want, err := hex.DecodeString(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimPrefix(strings.ToLower(cfg.Fingerprint), "sha256:")))
		if err != nil || len(want) != sha256.Size {
			return nil, usagef("fingerprint %q: want 64 hex digits (colons allowed), as printed by openssl x509 -noout -fingerprint -sha256", cfg.Fingerprint)
		}
		// The pin replaces the chain and host name checks; VerifyConnection
		// still runs and refuses any other certificate.
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(got[:], want) != 1 {
				return &pinError{got: Fingerprint(cs.PeerCertificates[0].Raw)}
			}
			return nil
		}
	}
	return tc, nil
}

type pinError struct{ got string }

func (e *pinError) Error() string {
	return "the server's certificate does not match the pinned fingerprint; the server sent SHA256 " + e.got
}

// flag returns the command line flag of this account named name
// ("ca-file"), as the user types it.
func (cfg *Config) flag(name string) string {
	return flagName(cfg.FlagPrefix, name)
}

func flagName(prefix, name string) string {
	if prefix == "" {
		return "--from-" + name + " (or --to-" + name + ")"
	}
	return "--" + prefix + "-" + name
}

func (cfg *Config) status(format string, a ...any) {
	if cfg.Status != nil {
		cfg.Status(fmt.Sprintf(format, a...))
	}
}

// tlsHint explains a TLS failure and how to fix it, ssh-style.
func (cfg *Config) tlsHint(err error) string {
	bridge := cfg.URL.Bridge
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var pe *pinError
	var cert *x509.Certificate
	switch {
	case errors.As(err, &pe):
		return "If the server's certificate changed on purpose (Bridge makes a new one after some upgrades), check the new fingerprint and pass it with " + cfg.flag("fingerprint") + ". If not, someone may be intercepting the connection."
	case errors.As(err, &ua):
		cert = ua.Cert
	case errors.As(err, &he):
		cert = he.Certificate
	}
	s := "The server's certificate is not trusted."
	if bridge {
		s += " Proton Mail Bridge uses a self-signed certificate: export it with Bridge's `cert export` and pass " + cfg.flag("ca-file") + " cert.pem, or pin it with " + cfg.flag("fingerprint") + "."
	} else {
		s += " Pass the issuing CA with " + cfg.flag("ca-file") + ", or pin the certificate with " + cfg.flag("fingerprint") + " after checking it out of band."
	}
	if cert != nil {
		s += "\n  The server's certificate has SHA256 fingerprint " + Fingerprint(cert.Raw)
	}
	return s
}

// connect gets the password and opens the TCP connection, wrapped in the
// idle timer; raw is the bare connection, to close on failure.
func (cfg *Config) connect(ctx context.Context) (raw, conn net.Conn, pw string, err error) {
	u := cfg.URL
	if !u.Auth.IsOAuth() {
		if pw, err = cfg.getPassword(ctx); err != nil {
			return nil, nil, "", err
		}
	}
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = 60 * time.Second
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	cfg.status("connecting to %s", u.Addr())
	raw, err = d.DialContext(ctx, "tcp", u.Addr())
	if err != nil {
		hint := "Check the host name and port, and that the server is up."
		if u.Bridge {
			hint = "Is Proton Mail Bridge running and logged in? It listens on 127.0.0.1:1143 by default (see `info` in bridge --cli); give another port as bridge://USER@127.0.0.1:PORT."
		}
		return nil, nil, "", &ConnectError{Op: "connect", Addr: u.Addr(), Err: err, Hint: hint}
	}
	return raw, &idleConn{Conn: raw, idle: idle}, pw, nil
}

// Dial connects, secures the connection, logs in and sends ID.
func (cfg *Config) Dial(ctx context.Context) (*Conn, error) {
	return oauthRetry(cfg, func(fresh bool) (*Conn, error) { return cfg.dial(ctx, fresh) })
}

// oauthRetry runs dial, and once more with a fresh token, on a new
// connection, when the server refused the OAuth2 token (it may have
// expired early, or been revoked and replaced; some servers close the
// connection after a refusal). The second refusal gets a hint.
func oauthRetry[T any](cfg *Config, dial func(fresh bool) (T, error)) (T, error) {
	c, err := dial(false)
	var oe *OAuthError
	if err == nil || !cfg.URL.Auth.IsOAuth() || !errors.As(err, &oe) {
		return c, err
	}
	c, err = dial(true)
	if err == nil || !errors.As(err, &oe) {
		return c, err
	}
	hint := "The server refused the token twice, the second time a fresh one: check that the user name is the address the token was issued for (the one you signed in as), that the token has the IMAP scope, and that IMAP is on for the account"
	switch cfg.URL.Auth {
	case AuthGoogle:
		hint += " (Gmail: Settings > Forwarding and POP/IMAP; Workspace: the admin must allow IMAP)."
	case AuthMicrosoft:
		hint += " (Microsoft 365: the admin must allow IMAP for the mailbox, and the app registration needs the IMAP.AccessAsUser.All permission)."
	default:
		hint += "."
	}
	return c, &ConnectError{Op: "login to", Addr: cfg.URL.Addr(), Err: oe, Hint: hint}
}

func (cfg *Config) dial(ctx context.Context, fresh bool) (*Conn, error) {
	u := cfg.URL
	raw, conn, pw, err := cfg.connect(ctx)
	if err != nil {
		return nil, err
	}
	opts := &imapclient.Options{}
	if cfg.Debug != nil {
		opts.DebugWriter = &redactor{w: cfg.Debug}
	}
	if u.Auth.IsOAuth() {
		return cfg.dialOAuth(ctx, raw, conn, opts, fresh)
	}
	var c *imapclient.Client
	watch := &wireWatch{}
	switch u.Security {
	case ImplicitTLS, StartTLS:
		tc, err := cfg.tlsConfig()
		if err != nil {
			raw.Close()
			return nil, err
		}
		if u.Security == ImplicitTLS {
			cfg.status("TLS handshake with %s", u.Addr())
			tconn := tls.Client(conn, tc)
			if err := tconn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, cfg.tlsError(err)
			}
			c = imapclient.New(&watchConn{Conn: tconn, w: watch}, opts)
		} else {
			watch = nil
			pc, err := cfg.greeted(ctx, raw, conn)
			if err != nil {
				return nil, err
			}
			cfg.status("STARTTLS with %s", u.Addr())
			opts.TLSConfig = tc
			c, err = imapclient.NewStartTLS(pc, opts)
			if err != nil {
				raw.Close()
				var ie *imap.Error
				if errors.As(err, &ie) {
					return nil, &ConnectError{Op: "STARTTLS with", Addr: u.Addr(), Err: fmt.Errorf("%w: %v", ErrNoStartTLS, err),
						Hint: "mailmove never falls back to plaintext. Use imaps:// if the server has implicit TLS (usually on port 993)."}
				}
				return nil, cfg.tlsError(err)
			}
		}
	default:
		pc, err := cfg.greeted(ctx, raw, conn)
		if err != nil {
			return nil, err
		}
		c = imapclient.New(&watchConn{Conn: pc, w: watch}, opts)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, &ConnectError{Op: "greeting from", Addr: u.Addr(), Err: err}
	}
	cfg.status("logging in to %s as %s", u.Addr(), u.User)
	if err := c.Login(u.User, pw).Wait(); err != nil {
		c.Close()
		hint := "Check the user name and password."
		if u.Bridge {
			hint = "Bridge wants the Bridge password shown by `info` in bridge --cli (not your Proton password) and an enabled address as user name."
		}
		return nil, &ConnectError{Op: "login to", Addr: u.Addr(), Err: err, Hint: hint}
	}
	return cfg.loggedIn(c, watch), nil
}

// loggedIn wraps a signed-in client and sends ID.
func (cfg *Config) loggedIn(c *imapclient.Client, watch *wireWatch) *Conn {
	cn := &Conn{Client: c, cfg: cfg, watch: watch}
	if c.Caps().Has(imap.CapID) {
		id, err := c.ID(&imap.IDData{Name: "mailmove", Version: cfg.Version}).Wait()
		if err == nil {
			cn.ServerID = id
		}
	}
	return cn
}

// dialOAuth secures the connection and signs in with an OAuth2 token
// itself (STARTTLS, CAPABILITY, AUTHENTICATE), then hands the signed-in
// connection to go-imap. go-imap's own AUTHENTICATE cannot answer a
// refusal's challenge with the empty line XOAUTH2 wants, and its STARTTLS
// leaves no way to do that on the TLS side.
func (cfg *Config) dialOAuth(ctx context.Context, raw, conn net.Conn, opts *imapclient.Options, fresh bool) (*Conn, error) {
	u := cfg.URL
	fail := func(err error) (*Conn, error) {
		raw.Close()
		return nil, err
	}
	var sc net.Conn // the connection to speak IMAP on, secured
	greeted := false
	switch u.Security {
	case ImplicitTLS:
		tc, err := cfg.tlsConfig()
		if err != nil {
			return fail(err)
		}
		cfg.status("TLS handshake with %s", u.Addr())
		t := tls.Client(conn, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return fail(cfg.tlsError(err))
		}
		sc = t
	case StartTLS:
		tc, err := cfg.tlsConfig()
		if err != nil {
			return fail(err)
		}
		pc, err := cfg.greeted(ctx, raw, conn)
		if err != nil {
			return nil, err
		}
		rc := newRawIMAP(pc, pc, cfg.Debug)
		if err := rc.greeting(); err != nil {
			return fail(&ConnectError{Op: "greeting from", Addr: u.Addr(), Err: err})
		}
		cfg.status("STARTTLS with %s", u.Addr())
		if _, err := rc.command("STARTTLS"); err != nil {
			var re *refusedError
			if !errors.As(err, &re) {
				return fail(&ConnectError{Op: "STARTTLS with", Addr: u.Addr(), Err: err})
			}
			return fail(&ConnectError{Op: "STARTTLS with", Addr: u.Addr(), Err: fmt.Errorf("%w: %v", ErrNoStartTLS, err),
				Hint: "mailmove never falls back to plaintext. Use imaps:// if the server has implicit TLS (usually on port 993)."})
		}
		if rc.br.Buffered() > 0 {
			// Bytes sent before the TLS handshake would be taken as
			// coming from inside it (STARTTLS command injection).
			return fail(&ConnectError{Op: "STARTTLS with", Addr: u.Addr(), Err: errors.New("the server sent data after its STARTTLS answer, before TLS; refused")})
		}
		t := tls.Client(pc, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			return fail(cfg.tlsError(err))
		}
		sc, greeted = t, true
	default:
		pc, err := cfg.greeted(ctx, raw, conn)
		if err != nil {
			return nil, err
		}
		sc = pc
	}
	rc := newRawIMAP(sc, sc, cfg.Debug)
	if !greeted {
		if err := rc.greeting(); err != nil {
			return fail(&ConnectError{Op: "greeting from", Addr: u.Addr(), Err: err})
		}
	}
	if err := cfg.oauthLogin(ctx, rc, fresh); err != nil {
		return fail(err)
	}
	watch := &wireWatch{}
	c := imapclient.New(&watchConn{Conn: preauthConn(sc, rc), w: watch}, opts)
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, &ConnectError{Op: "greeting from", Addr: u.Addr(), Err: err}
	}
	return cfg.loggedIn(c, watch), nil
}

// ErrNoStartTLS says the server refused STARTTLS (imap:// requires it).
var ErrNoStartTLS = errors.New("the server does not offer STARTTLS")

// TLSModeError says the server speaks another protocol on this port than
// the URL's scheme expects: plain IMAP where imaps:// expects TLS from the
// first byte, or TLS where imap:// (STARTTLS) expects a plain greeting.
type TLSModeError struct {
	// Addr is the server's address.
	Addr string
	// Want is what the URL asked for; Server is what the server speaks
	// (ImplicitTLS or, for a plain "* OK" greeting, StartTLS).
	Want, Server Security
}

func (e *TLSModeError) Error() string {
	if e.Server == ImplicitTLS {
		return "the server speaks TLS from the first byte on this port (implicit TLS), not a plain IMAP greeting"
	}
	return "the server sent a plain IMAP greeting (\"* OK\") on this port, not a TLS handshake"
}

// tlsError turns a failed TLS handshake into a ConnectError with the right
// advice: a plain IMAP answer to imaps:// means the port wants imap://
// (STARTTLS); anything else is about certificates.
func (cfg *Config) tlsError(err error) error {
	u := cfg.URL
	var rh tls.RecordHeaderError
	if u.Security == ImplicitTLS && errors.As(err, &rh) && bytes.HasPrefix(rh.RecordHeader[:], []byte("* ")) {
		me := &TLSModeError{Addr: u.Addr(), Want: ImplicitTLS, Server: StartTLS}
		return &ConnectError{Op: "TLS with", Addr: u.Addr(), Err: me, Hint: cfg.modeHint(me)}
	}
	return &ConnectError{Op: "TLS with", Addr: u.Addr(), Err: err, Hint: cfg.tlsHint(err)}
}

func (cfg *Config) modeHint(e *TLSModeError) string {
	u := cfg.URL
	scheme := "imap"
	if u.Bridge {
		scheme = "bridge"
	}
	if e.Server == ImplicitTLS {
		alt := "imaps://" + url.PathEscape(u.User) + "@" + u.Addr()
		if u.Bridge {
			alt = "bridge://" + url.PathEscape(u.User) + "@" + u.Addr() + "?tls=implicit"
		}
		return "This port expects TLS from the first byte: use " + alt + " (port 993 is the usual implicit TLS port, 143 the STARTTLS one)."
	}
	alt := scheme + "://" + url.PathEscape(u.User) + "@" + u.Addr()
	return "This port expects STARTTLS: use " + alt + " (still encrypted and verified: mailmove never falls back to plaintext), or the server's implicit TLS port (usually 993) with imaps://."
}

// greetingProbeAfter is how long Dial waits for a plain greeting before it
// checks, on a second connection, whether the port speaks TLS instead.
var greetingProbeAfter = 3 * time.Second

// greeted waits for the first bytes of the server's greeting on a plain
// connection (imap://, STARTTLS or plaintext) and returns a connection that
// gives them again. A server that answers with TLS bytes, or says nothing
// while a second connection finds a TLS server on the port, is an
// implicit-TLS port: that is a TLSModeError, not a long wait for the idle
// timeout.
func (cfg *Config) greeted(ctx context.Context, raw, conn net.Conn) (net.Conn, error) {
	u := cfg.URL
	cfg.status("waiting for the greeting of %s", u.Addr())
	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		got <- result{buf[:n], err}
	}()
	mismatch := func() error {
		me := &TLSModeError{Addr: u.Addr(), Want: u.Security, Server: ImplicitTLS}
		return &ConnectError{Op: "greeting from", Addr: u.Addr(), Err: me, Hint: cfg.modeHint(me)}
	}
	timer := time.NewTimer(greetingProbeAfter)
	defer timer.Stop()
	var probe chan bool
	for {
		select {
		case r := <-got:
			if len(r.b) == 0 {
				raw.Close()
				if r.err == nil {
					r.err = io.ErrUnexpectedEOF
				}
				return nil, &ConnectError{Op: "greeting from", Addr: u.Addr(), Err: r.err, Hint: "The server closed the connection or said nothing. Check the port: 143 is IMAP with STARTTLS (imap://), 993 implicit TLS (imaps://)."}
			}
			if r.b[0] == 0x15 || r.b[0] == 0x16 {
				// a TLS alert or handshake record, not "* OK"
				raw.Close()
				return nil, mismatch()
			}
			return &replayConn{Conn: conn, r: io.MultiReader(bytes.NewReader(r.b), conn)}, nil
		case <-timer.C:
			probe = make(chan bool, 1)
			go func() { probe <- speaksTLS(ctx, u) }()
		case isTLS := <-probe:
			probe = nil
			if isTLS {
				raw.Close()
				<-got
				return nil, mismatch()
			}
		case <-ctx.Done():
			raw.Close()
			<-got
			return nil, ctx.Err()
		}
	}
}

// speaksTLS reports whether the server at u answers a TLS ClientHello on a
// connection of its own. Nothing is sent but the handshake (no password,
// no command), so the certificate is not checked here: this only tells
// imaps:// from imap:// for a hint.
func speaksTLS(ctx context.Context, u *URL) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := &net.Dialer{}
	c, err := d.DialContext(ctx, "tcp", u.Addr())
	if err != nil {
		return false
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: u.Host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS10})
	err = tc.HandshakeContext(ctx)
	var alert tls.AlertError
	return err == nil || errors.As(err, &alert)
}

// replayConn gives the bytes greeted read, then the rest of the connection.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (cfg *Config) getPassword(ctx context.Context) (string, error) {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.havePass {
		return cfg.password, nil
	}
	if cfg.URL.Scheme == "demo" {
		cfg.password, cfg.havePass = "demo", true
		return cfg.password, nil
	}
	ps := cfg.Password
	if ps.FlagPrefix == "" {
		ps.FlagPrefix = cfg.FlagPrefix
	}
	if ps.Prompt == "" {
		ps.Prompt = fmt.Sprintf("Password for %s: ", cfg.URL.String())
	}
	// The status line keeps still while a prompt (ours, or a password
	// command's) may be on the terminal.
	cfg.status("")
	pw, err := ps.Password(ctx)
	if err != nil {
		return "", err
	}
	cfg.password, cfg.havePass = pw, true
	return pw, nil
}

// idleConn replaces go-imap's fixed read and write deadlines (30 s for a
// reply line, 5 minutes absolute for a literal) with one idle timer: a
// transfer may take as long as it needs while bytes keep moving in either
// direction (an upload of a big message on a slow line keeps the wait for
// the server's answer alive), and a silent server is given up on.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Write(p)
	if n > 0 {
		// a Read waiting for the answer meanwhile gets more time too
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
	}
	return n, err
}

func (c *idleConn) SetDeadline(time.Time) error      { return nil }
func (c *idleConn) SetReadDeadline(time.Time) error  { return nil }
func (c *idleConn) SetWriteDeadline(time.Time) error { return nil }

// redactor passes go-imap's wire log through, hiding LOGIN and AUTHENTICATE
// credentials. Lines over 4 KiB are dropped.
type redactor struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
	// authTag is the tag of an AUTHENTICATE under way: until its answer,
	// the client's continuation lines are credentials too.
	authTag string
}

func (r *redactor) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			if len(r.buf) > 4096 {
				r.buf = r.buf[:0] // literal data: not logged
			}
			return len(p), nil
		}
		line := string(r.buf[:i+1])
		r.buf = r.buf[i+1:]
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 2 && (strings.EqualFold(fields[1], "LOGIN") || strings.EqualFold(fields[1], "AUTHENTICATE")):
			if strings.EqualFold(fields[1], "AUTHENTICATE") {
				r.authTag = fields[0]
			}
			line = fields[0] + " " + fields[1] + " [credentials redacted]\r\n"
		case r.authTag != "" && len(fields) >= 1 && fields[0] == r.authTag:
			r.authTag = ""
		case r.authTag != "" && !strings.HasPrefix(line, "+") && !strings.HasPrefix(line, "*"):
			line = "[credentials redacted]\r\n"
		}
		if _, err := io.WriteString(r.w, line); err != nil {
			return len(p), nil
		}
	}
}
