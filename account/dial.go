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

// tlsHint explains a TLS failure and how to fix it, ssh-style.
func tlsHint(err error, bridge bool) string {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var pe *pinError
	var cert *x509.Certificate
	switch {
	case errors.As(err, &pe):
		return "If the server's certificate changed on purpose (Bridge makes a new one after some upgrades), check the new fingerprint and pass it with --*-fingerprint. If not, someone may be intercepting the connection."
	case errors.As(err, &ua):
		cert = ua.Cert
	case errors.As(err, &he):
		cert = he.Certificate
	}
	s := "The server's certificate is not trusted."
	if bridge {
		s += " Proton Mail Bridge uses a self-signed certificate: export it with Bridge's `cert export` and pass --*-ca-file cert.pem, or pin it with --*-fingerprint."
	} else {
		s += " Pass the issuing CA with --*-ca-file, or pin the certificate with --*-fingerprint after checking it out of band."
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
	if pw, err = cfg.getPassword(ctx); err != nil {
		return nil, nil, "", err
	}
	idle := cfg.IdleTimeout
	if idle <= 0 {
		idle = 60 * time.Second
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
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
	u := cfg.URL
	raw, conn, pw, err := cfg.connect(ctx)
	if err != nil {
		return nil, err
	}
	opts := &imapclient.Options{}
	if cfg.Debug != nil {
		opts.DebugWriter = &redactor{w: cfg.Debug}
	}
	var c *imapclient.Client
	switch u.Security {
	case ImplicitTLS, StartTLS:
		tc, err := cfg.tlsConfig()
		if err != nil {
			raw.Close()
			return nil, err
		}
		if u.Security == ImplicitTLS {
			tconn := tls.Client(conn, tc)
			if err := tconn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, &ConnectError{Op: "TLS with", Addr: u.Addr(), Err: err, Hint: tlsHint(err, u.Bridge)}
			}
			c = imapclient.New(tconn, opts)
		} else {
			opts.TLSConfig = tc
			c, err = imapclient.NewStartTLS(conn, opts)
			if err != nil {
				raw.Close()
				hint := tlsHint(err, u.Bridge)
				if strings.Contains(err.Error(), "STARTTLS") {
					hint = "The server does not offer STARTTLS, and mailmove never falls back to plaintext. Use imaps:// if it has implicit TLS."
				}
				return nil, &ConnectError{Op: "STARTTLS with", Addr: u.Addr(), Err: err, Hint: hint}
			}
		}
	default:
		c = imapclient.New(conn, opts)
	}
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, &ConnectError{Op: "greeting from", Addr: u.Addr(), Err: err}
	}
	if err := c.Login(u.User, pw).Wait(); err != nil {
		c.Close()
		hint := "Check the user name and password."
		if u.Bridge {
			hint = "Bridge wants the Bridge password shown by `info` in bridge --cli (not your Proton password) and an enabled address as user name."
		}
		return nil, &ConnectError{Op: "login to", Addr: u.Addr(), Err: err, Hint: hint}
	}
	cn := &Conn{Client: c, cfg: cfg}
	if c.Caps().Has(imap.CapID) {
		id, err := c.ID(&imap.IDData{Name: "mailmove", Version: cfg.Version}).Wait()
		if err == nil {
			cn.ServerID = id
		}
	}
	return cn, nil
}

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
	if ps.Prompt == "" {
		ps.Prompt = fmt.Sprintf("Password for %s: ", cfg.URL.String())
	}
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
		if len(fields) >= 2 && (strings.EqualFold(fields[1], "LOGIN") || strings.EqualFold(fields[1], "AUTHENTICATE")) {
			line = fields[0] + " " + fields[1] + " [credentials redacted]\r\n"
		}
		if _, err := io.WriteString(r.w, line); err != nil {
			return len(p), nil
		}
	}
}
