// Package oauthtest is a fake OAuth2 authorisation server for tests: a
// token endpoint (authorization code with PKCE, refresh with rotation,
// device code), a device code endpoint whose codes stay pending until
// approved, and an authorization endpoint that approves at once and
// redirects to a loopback redirect URI. It also makes a TLS certificate for
// 127.0.0.1, for the IMAP servers of the tests.
package oauthtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Server is the fake authorisation server. Its base URL goes into
// MAILMOVE_OAUTH_ENDPOINTS.
type Server struct {
	// URL is the base URL (BASE/authorize, BASE/token, BASE/devicecode,
	// BASE/device).
	URL string
	// ClientID and ClientSecret are the one client it knows; an empty
	// secret makes it a public client.
	ClientID, ClientSecret string
	// ExpiresIn is the lifetime given with access tokens, in seconds
	// (default 3600).
	ExpiresIn int
	// Rotate gives a new refresh token with every refresh (as Microsoft
	// does) and makes the old one invalid.
	Rotate bool
	// User is the user name the introspection endpoint (BASE/introspect,
	// RFC 7662, for servers such as Dovecot's oauth2 passdb) says a valid
	// token belongs to.
	User string

	srv *httptest.Server
	mu  sync.Mutex
	// access tokens that are valid; refresh tokens that are valid
	access, refresh map[string]bool
	codes           map[string]string // code -> code_challenge
	devices         map[string]*device
	// Scopes are the scope parameters seen, in order.
	scopes []string
	// counters
	refreshes, exchanges int
	verifierChecked      bool
}

type device struct {
	userCode string
	approved bool
}

// New starts a fake authorisation server on loopback for the client
// clientID (with secret, or "" for a public client).
func New(clientID, secret string) *Server {
	s := &Server{ClientID: clientID, ClientSecret: secret, ExpiresIn: 3600,
		access: map[string]bool{}, refresh: map[string]bool{}, codes: map[string]string{}, devices: map[string]*device{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", s.authorize)
	mux.HandleFunc("/token", s.token)
	mux.HandleFunc("/devicecode", s.deviceCode)
	mux.HandleFunc("/device", s.approve)
	mux.HandleFunc("/introspect", s.introspect)
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

func rnd(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func fail(w http.ResponseWriter, code int, errCode, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": errCode, "error_description": desc})
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "http" || redirect.Hostname() != "127.0.0.1" {
		http.Error(w, "redirect_uri must be http://127.0.0.1:PORT/", http.StatusBadRequest)
		return
	}
	if q.Get("client_id") != s.ClientID || q.Get("response_type") != "code" {
		http.Error(w, "unknown client or response_type", http.StatusBadRequest)
		return
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "PKCE with S256 required", http.StatusBadRequest)
		return
	}
	code := rnd("code-")
	s.mu.Lock()
	s.codes[code] = q.Get("code_challenge")
	s.scopes = append(s.scopes, q.Get("scope"))
	s.mu.Unlock()
	v := redirect.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (s *Server) deviceCode(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	if r.PostForm.Get("client_id") != s.ClientID {
		fail(w, 400, "invalid_client", "unknown client")
		return
	}
	dc, uc := rnd("dev-"), strings.ToUpper(rnd("")[:8])
	s.mu.Lock()
	s.devices[dc] = &device{userCode: uc}
	s.scopes = append(s.scopes, r.PostForm.Get("scope"))
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"device_code": dc, "user_code": uc, "verification_uri": s.URL + "/device", "expires_in": 900, "interval": 1})
}

// approve is the page the user opens: ?user_code=X approves that code.
func (s *Server) approve(w http.ResponseWriter, r *http.Request) {
	uc := r.FormValue("user_code")
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.devices {
		if d.userCode == uc {
			d.approved = true
			w.Write([]byte("approved"))
			return
		}
	}
	http.Error(w, "unknown code", http.StatusNotFound)
}

// introspect answers RFC 7662 token introspection: active, and the user.
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	s.mu.Lock()
	active := s.access[r.PostForm.Get("token")]
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if !active {
		json.NewEncoder(w).Encode(map[string]any{"active": false})
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"active": true, "username": s.User})
}

func (s *Server) clientOK(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == s.ClientID && secret == s.ClientSecret
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f := r.PostForm
	if !s.clientOK(r) {
		fail(w, 401, "invalid_client", "bad client id or secret")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch f.Get("grant_type") {
	case "authorization_code":
		challenge, ok := s.codes[f.Get("code")]
		if !ok {
			fail(w, 400, "invalid_grant", "unknown code")
			return
		}
		delete(s.codes, f.Get("code"))
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != challenge {
			fail(w, 400, "invalid_grant", "code_verifier does not match the code_challenge")
			return
		}
		s.verifierChecked = true
		s.exchanges++
		s.issue(w, "")
	case "refresh_token":
		rt := f.Get("refresh_token")
		if !s.refresh[rt] {
			fail(w, 400, "invalid_grant", "Token has been expired or revoked.")
			return
		}
		s.refreshes++
		if s.Rotate {
			delete(s.refresh, rt)
			s.issue(w, "")
		} else {
			s.issue(w, rt)
		}
	case "urn:ietf:params:oauth:grant-type:device_code":
		d, ok := s.devices[f.Get("device_code")]
		switch {
		case !ok:
			fail(w, 400, "expired_token", "unknown device code")
		case !d.approved:
			fail(w, 400, "authorization_pending", "waiting for the user")
		default:
			delete(s.devices, f.Get("device_code"))
			s.exchanges++
			s.issue(w, "")
		}
	default:
		fail(w, 400, "unsupported_grant_type", f.Get("grant_type"))
	}
}

// issue answers with a new access token and, unless keep is set, a new
// refresh token (keep: none is sent, the client keeps its own).
func (s *Server) issue(w http.ResponseWriter, keep string) {
	at := rnd("at-")
	s.access[at] = true
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": s.ExpiresIn}
	if keep == "" {
		rt := rnd("rt-")
		s.refresh[rt] = true
		resp["refresh_token"] = rt
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// Valid reports whether token is a valid access token (for the IMAP
// server's check).
func (s *Server) Valid(user, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access[token]
}

// ExpireAccessTokens makes every access token given so far invalid, as
// if they had expired.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access = map[string]bool{}
}

// RevokeAll makes every token invalid, refresh tokens included (the user
// revoked the app's access, or changed the password).
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.access, s.refresh = map[string]bool{}, map[string]bool{}
}

// Issue makes a valid access and refresh token without a flow, for
// seeding.
func (s *Server) Issue() (access, refresh string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	access, refresh = rnd("at-"), rnd("rt-")
	s.access[access], s.refresh[refresh] = true, true
	return access, refresh
}

// IsRefreshToken reports whether rt is a valid refresh token now.
func (s *Server) IsRefreshToken(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[rt]
}

// Refreshes is how many refresh grants succeeded.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// VerifierChecked reports whether a code was exchanged with a PKCE
// verifier that matched its challenge.
func (s *Server) VerifierChecked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verifierChecked
}

// Scopes returns the scope parameters of the flows started, in order.
func (s *Server) Scopes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.scopes...)
}

// TLS returns a server configuration with a fresh self-signed certificate
// for 127.0.0.1, and that certificate in PEM (for --from-ca-file).
func TLS() (*tls.Config, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
