package account

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// MemServer is an in-memory IMAP server on a loopback port (go-imap's
// imapmemserver): the demo mailbox, and the server of many tests.
type MemServer struct {
	// Addr is host:port of the listener.
	Addr string
	srv  *imapserver.Server
	ln   net.Listener
}

// ServeMemory starts an in-memory IMAP server on 127.0.0.1 with one user.
// With tlsCfg set it offers STARTTLS; without, it allows plaintext login
// (loopback only). Caps nil means IMAP4rev1 and IMAP4rev2.
func ServeMemory(user, password string, tlsCfg *tls.Config, caps imap.CapSet) (*MemServer, error) {
	return ServeMemoryWrapped(user, password, tlsCfg, caps, nil)
}

// ServeMemoryWrapped is ServeMemory with every session passed through wrap,
// so that tests can make the server misbehave.
func ServeMemoryWrapped(user, password string, tlsCfg *tls.Config, caps imap.CapSet, wrap func(imapserver.Session) imapserver.Session) (*MemServer, error) {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(user, password)
	if err := u.Create("INBOX", nil); err != nil {
		return nil, err
	}
	mem.AddUser(u)
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s := mem.NewSession()
			if wrap != nil {
				s = wrap(s)
			}
			return s, nil, nil
		},
		Caps:         caps,
		TLSConfig:    tlsCfg,
		InsecureAuth: tlsCfg == nil,
		Logger:       log.New(io.Discard, "", 0),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(ln)
	return &MemServer{Addr: ln.Addr().String(), srv: srv, ln: ln}, nil
}

// Close stops the server.
func (s *MemServer) Close() error { return s.srv.Close() }

// DemoMessage is one entry of the demo corpus manifest.
type DemoMessage struct {
	Folder string   `json:"folder"`
	File   string   `json:"file"`
	Flags  []string `json:"flags"`
	Date   string   `json:"date"`
}

// Seed appends the messages of a corpus (manifest.json plus .eml files, as
// in testdata/demo) to the account, creating folders, with their flags and
// dates. Folders in the manifest use "/" as delimiter.
func (c *Conn) Seed(corpus fs.FS) error {
	b, err := fs.ReadFile(corpus, "manifest.json")
	if err != nil {
		return err
	}
	var msgs []DemoMessage
	if err := json.Unmarshal(b, &msgs); err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	created := map[string]bool{"INBOX": true}
	have, err := c.ListFolders()
	if err != nil {
		return err
	}
	for _, f := range have {
		created[f.Path()] = true
	}
	for _, m := range msgs {
		segs := strings.Split(m.Folder, "/")
		for i := range segs {
			p := strings.Join(segs[:i+1], "/")
			if !created[p] {
				if err := c.Create(p, nil).Wait(); err != nil {
					return fmt.Errorf("CREATE %q: %w", p, err)
				}
				created[p] = true
			}
		}
		raw, err := fs.ReadFile(corpus, m.File)
		if err != nil {
			return err
		}
		date, err := time.Parse(time.RFC1123Z, m.Date)
		if err != nil {
			return fmt.Errorf("%s: date %q: %w", m.File, m.Date, err)
		}
		var flags []imap.Flag
		for _, f := range m.Flags {
			flags = append(flags, imap.Flag(f))
		}
		ap := c.Append(m.Folder, int64(len(raw)), &imap.AppendOptions{Flags: flags, Time: date})
		if _, err := ap.Write(raw); err != nil {
			return err
		}
		if err := ap.Close(); err != nil {
			return err
		}
		if _, err := ap.Wait(); err != nil {
			return fmt.Errorf("APPEND %s to %q: %w", m.File, m.Folder, err)
		}
	}
	return nil
}

// StartDemo serves the demo corpus over IMAP on a random loopback port and
// returns the server and the account to read it from.
func StartDemo(ctx context.Context, corpus fs.FS) (*MemServer, *URL, error) {
	srv, err := ServeMemory("demo", "demo", nil, nil)
	if err != nil {
		return nil, nil, err
	}
	host, port, _ := net.SplitHostPort(srv.Addr)
	u, err := ParseURL("imap://demo@" + net.JoinHostPort(host, port) + "?tls=none")
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	cfg := &Config{URL: u}
	cfg.password, cfg.havePass = "demo", true
	c, err := cfg.Dial(ctx)
	if err != nil {
		srv.Close()
		return nil, nil, err
	}
	defer c.Close()
	if err := c.Seed(corpus); err != nil {
		srv.Close()
		return nil, nil, fmt.Errorf("seeding the demo mailbox: %w", err)
	}
	c.Logout().Wait()
	u.Scheme = "demo"
	return srv, u, nil
}

// OAuthServerOptions make ServeMemoryOAuth's server one that takes only
// OAuth2 access tokens, as Microsoft's and (for OAuth apps) Google's do.
type OAuthServerOptions struct {
	// Mechanisms are the SASL mechanisms announced: "XOAUTH2",
	// "OAUTHBEARER" or both (default XOAUTH2).
	Mechanisms []string
	// Valid reports whether token is a valid access token for user.
	Valid func(user, token string) bool
	// ImplicitTLS serves TLS from the first byte; else STARTTLS is
	// offered (and required for AUTHENTICATE).
	ImplicitTLS bool
	// Scope is what the refusal's JSON challenge says the token needs.
	Scope string
}

// ServeMemoryOAuth starts an in-memory IMAP server on 127.0.0.1 whose
// one user signs in only by AUTHENTICATE XOAUTH2 or OAUTHBEARER with a
// token o.Valid accepts; LOGIN is refused. A refused token gets the
// providers' answer: a base64 JSON challenge, then, after the client's
// (empty) answer, NO [AUTHENTICATIONFAILED].
func ServeMemoryOAuth(user string, tlsCfg *tls.Config, o OAuthServerOptions) (*MemServer, error) {
	if tlsCfg == nil {
		return nil, fmt.Errorf("ServeMemoryOAuth needs a TLS configuration")
	}
	mem := imapmemserver.New()
	var key [16]byte
	rand.Read(key[:])
	pw := hex.EncodeToString(key[:])
	u := imapmemserver.NewUser(user, pw)
	if err := u.Create("INBOX", nil); err != nil {
		return nil, err
	}
	mem.AddUser(u)
	mechs := o.Mechanisms
	if len(mechs) == 0 {
		mechs = []string{"XOAUTH2"}
	}
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &oauthSession{memSession: mem.NewSession().(memSession), user: user, pw: pw, o: o, mechs: mechs}, nil, nil
		},
		Caps:   imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		Logger: log.New(io.Discard, "", 0),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if o.ImplicitTLS {
		ln = tls.NewListener(ln, tlsCfg)
	} else {
		opts.TLSConfig = tlsCfg
	}
	srv := imapserver.New(opts)
	go srv.Serve(ln)
	return &MemServer{Addr: ln.Addr().String(), srv: srv, ln: ln}, nil
}

// memSession is what imapmemserver's sessions offer (IMAP4rev2 needs
// NAMESPACE).
type memSession interface {
	imapserver.SessionNamespace
	imapserver.SessionMove
}

type oauthSession struct {
	memSession
	user, pw string
	o        OAuthServerOptions
	mechs    []string
}

func (s *oauthSession) Login(string, string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "LOGIN is disabled: sign in with OAuth2"}
}

func (s *oauthSession) AuthenticateMechanisms() []string { return s.mechs }

func (s *oauthSession) Authenticate(mech string) (sasl.Server, error) {
	for _, m := range s.mechs {
		if m == mech {
			return &oauthSASLServer{s: s, mech: mech}, nil
		}
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
}

// oauthSASLServer is the server side of XOAUTH2 and OAUTHBEARER.
type oauthSASLServer struct {
	s      *oauthSession
	mech   string
	failed bool
}

func (a *oauthSASLServer) Next(resp []byte) ([]byte, bool, error) {
	if a.failed {
		return nil, false, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Invalid credentials (Failure)"}
	}
	if resp == nil {
		return []byte{}, false, nil // ask for the initial response
	}
	var user, token string
	fields := strings.Split(string(resp), "\x01")
	for i, f := range fields {
		switch {
		case i == 0 && a.mech == "OAUTHBEARER":
			// gs2 header: n,a=USER,
			for _, p := range strings.Split(f, ",") {
				if v, ok := strings.CutPrefix(p, "a="); ok {
					user = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(v)
				}
			}
		case strings.HasPrefix(f, "user="):
			user = strings.TrimPrefix(f, "user=")
		case strings.HasPrefix(f, "auth=Bearer "):
			token = strings.TrimPrefix(f, "auth=Bearer ")
		}
	}
	if user == a.s.user && token != "" && a.s.o.Valid != nil && a.s.o.Valid(user, token) {
		if err := a.s.memSession.Login(a.s.user, a.s.pw); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	a.failed = true
	ch, _ := json.Marshal(map[string]string{"status": "401", "schemes": "bearer", "scope": a.s.o.Scope})
	return ch, false, nil
}
