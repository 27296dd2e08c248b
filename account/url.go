// Package account connects to a mail account over IMAP: it parses account
// URLs, gets the password without it ever appearing in argv, sets up TLS
// (system roots, a CA file, or a pinned certificate fingerprint), dials with
// an idle timeout, and offers the few IMAP operations that export and import
// need, with go-imap v2's silent-loss traps guarded.
//
// An account is the read side (and, for import, the write side) of the
// mailmove pipeline: account -> message -> archive.
package account

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Security is how the connection to the server is protected.
type Security int

const (
	// ImplicitTLS is TLS from the first byte (imaps://, usually port 993).
	ImplicitTLS Security = iota
	// StartTLS upgrades a plain connection with STARTTLS; a server that does
	// not offer it is refused, never used in plaintext.
	StartTLS
	// Plaintext is no protection at all; only allowed to loopback addresses.
	Plaintext
)

func (s Security) String() string {
	switch s {
	case ImplicitTLS:
		return "implicit TLS"
	case StartTLS:
		return "STARTTLS"
	default:
		return "plaintext"
	}
}

// URL is a parsed account URL.
type URL struct {
	// Scheme is "imaps", "imap", "bridge", "gmail", "outlook" or "demo".
	Scheme string
	// User is the login name, decoded (it may contain '@').
	User string
	// Host is the server's host name or address, without port.
	Host string
	// Port is the TCP port.
	Port int
	// Security is how the connection is protected.
	Security Security
	// Bridge is true for bridge:// URLs: Proton Mail Bridge folder rules apply.
	Bridge bool
	// Auth is how mailmove signs in: a password (LOGIN), or an OAuth2
	// access token (AUTHENTICATE XOAUTH2 or OAUTHBEARER).
	Auth Auth
}

// Auth is how an account signs in.
type Auth string

const (
	// AuthPassword is IMAP LOGIN with a password (or app password).
	AuthPassword Auth = "password"
	// AuthGoogle is OAuth2 with Google's authorisation server (Gmail,
	// Google Workspace); `mailmove login` gets the token by the loopback
	// redirect with PKCE.
	AuthGoogle Auth = "google"
	// AuthMicrosoft is OAuth2 with Microsoft's identity platform (Microsoft
	// 365, Outlook.com); `mailmove login` gets the token by the device code
	// flow.
	AuthMicrosoft Auth = "microsoft"
	// AuthOAuth is OAuth2 with a token that only a command gives
	// (--from-oauth-token-cmd); mailmove has no sign-in flow for it.
	AuthOAuth Auth = "oauth"
)

// IsOAuth reports whether the account signs in with an OAuth2 token.
func (a Auth) IsOAuth() bool { return a == AuthGoogle || a == AuthMicrosoft || a == AuthOAuth }

// presets are the account URL schemes that fill in a provider's server.
var presets = map[string]struct {
	host string
	auth Auth
}{
	"gmail":   {"imap.gmail.com", AuthGoogle},
	"outlook": {"outlook.office365.com", AuthMicrosoft},
}

// Addr returns host:port.
func (u *URL) Addr() string { return net.JoinHostPort(u.Host, strconv.Itoa(u.Port)) }

// String returns the URL in the form it was given, without any password.
func (u *URL) String() string {
	if u.Scheme == "demo" {
		return "demo"
	}
	if p, ok := presets[u.Scheme]; ok && u.Host == p.host && u.Port == 993 && u.Security == ImplicitTLS && u.Auth == p.auth {
		return u.Scheme + "://" + url.PathEscape(u.User)
	}
	s := u.Scheme + "://" + url.PathEscape(u.User) + "@" + u.Addr()
	var q []string
	if u.Security == Plaintext {
		q = append(q, "tls=none")
	} else if _, ok := presets[u.Scheme]; ok && u.Security == StartTLS {
		q = append(q, "tls=starttls")
	}
	if p, ok := presets[u.Scheme]; (ok && u.Auth != p.auth) || (!ok && u.Auth != "" && u.Auth != AuthPassword) {
		q = append(q, "auth="+string(u.Auth))
	}
	if len(q) > 0 {
		s += "?" + strings.Join(q, "&")
	}
	return s
}

// UsageError is an error in what the user typed; the CLI exits with status 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// ParseURL parses an account URL:
//
//	imaps://USER@HOST[:993]          implicit TLS
//	imap://USER@HOST[:143]           STARTTLS, required
//	imap://USER@HOST:PORT?tls=none   plaintext, loopback only
//	bridge://USER[@127.0.0.1:1143]   Proton Mail Bridge (STARTTLS; ?tls=implicit for its SSL mode)
//	gmail://USER                     imap.gmail.com:993, OAuth2 with Google (?auth=password for an app password)
//	outlook://USER                   outlook.office365.com:993, OAuth2 with Microsoft
//	demo                             the built-in demo mailbox
//
// ?auth=google|microsoft|oauth|password chooses how to sign in (password,
// the default, is LOGIN; the others AUTHENTICATE with an OAuth2 token).
// USER may contain '@', percent-encoded or not. A password in the URL is
// refused: it would show in the process list and in shell history.
func ParseURL(s string) (*URL, error) { return ParseURLFlag(s, "") }

// ParseURLFlag is ParseURL for the account of the command line flag
// --PREFIX (prefix "from" or "to"), so that its errors name the real flags
// (--from-password-file); an empty prefix names both.
func ParseURLFlag(s, prefix string) (*URL, error) {
	if s == "demo" || s == "demo://" {
		return &URL{Scheme: "demo", User: "demo", Host: "127.0.0.1", Security: Plaintext}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return nil, usagef("account %q: want imaps://USER@HOST, imap://USER@HOST, bridge://USER or demo", s)
	}
	scheme = strings.ToLower(scheme)
	u := &URL{Scheme: scheme, Auth: AuthPassword}
	switch scheme {
	case "gmail", "outlook":
		u.Security, u.Port = ImplicitTLS, 993
		u.Host, u.Auth = presets[scheme].host, presets[scheme].auth
	case "imaps":
		u.Security, u.Port = ImplicitTLS, 993
	case "imap":
		u.Security, u.Port = StartTLS, 143
	case "bridge":
		u.Security, u.Port, u.Bridge = StartTLS, 1143, true
		u.Host = "127.0.0.1"
	default:
		return nil, usagef("account %q: unknown scheme %q; use imaps://, imap://, bridge://, gmail:// or outlook://", s, scheme)
	}
	var query string
	rest, query, _ = strings.Cut(rest, "?")
	rest = strings.TrimSuffix(rest, "/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return nil, usagef("account %q: a folder path in the URL is not supported; use --folder", s)
	}
	userPart, hostPart := rest, ""
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		userPart, hostPart = rest[:at], rest[at+1:]
	}
	_, preset := presets[scheme]
	if (scheme == "bridge" || preset) && hostPart != "" && !looksLikeBridgeHost(hostPart) {
		// bridge://me@proton.me, gmail://me@gmail.com: the whole thing is
		// the user name.
		userPart, hostPart = rest, ""
	}
	if scheme != "bridge" && !preset && (hostPart == "" || userPart == "") {
		return nil, usagef("account %q: want %s://USER@HOST (user name and server both needed)", s, scheme)
	}
	if strings.Contains(userPart, ":") {
		env := "MAILMOVE_FROM_PASSWORD (or MAILMOVE_TO_PASSWORD)"
		if prefix != "" {
			env = "MAILMOVE_" + strings.ToUpper(prefix) + "_PASSWORD"
		}
		return nil, usagef("account %q: the URL holds a password; remove it and use %s, %s or the %s variable, so it never shows in the process list", redactURL(s), flagName(prefix, "password-file"), flagName(prefix, "password-cmd"), env)
	}
	user, err := url.PathUnescape(userPart)
	if err != nil {
		return nil, usagef("account %q: bad percent-encoding in the user name: %v", s, err)
	}
	if user == "" {
		return nil, usagef("account %q: no user name", s)
	}
	u.User = user
	if hostPart != "" {
		h, p, err := net.SplitHostPort(hostPart)
		if err != nil {
			h = strings.Trim(hostPart, "[]")
		} else {
			port, err := strconv.Atoi(p)
			if err != nil || port <= 0 || port > 65535 {
				return nil, usagef("account %q: bad port %q", s, p)
			}
			u.Port = port
		}
		if h == "" {
			return nil, usagef("account %q: no host", s)
		}
		u.Host = h
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, usagef("account %q: bad query: %v", s, err)
		}
		for k, v := range q {
			switch k {
			case "tls":
				switch strings.ToLower(v[0]) {
				case "none", "plain", "off":
					u.Security = Plaintext
				case "starttls":
					u.Security = StartTLS
				case "implicit", "ssl":
					u.Security = ImplicitTLS
				default:
					return nil, usagef("account %q: tls=%s: want tls=starttls, tls=implicit or tls=none", s, v[0])
				}
			case "auth":
				switch a := Auth(strings.ToLower(v[0])); a {
				case AuthPassword, AuthGoogle, AuthMicrosoft, AuthOAuth:
					u.Auth = a
				default:
					return nil, usagef("account %q: auth=%s: want auth=google, auth=microsoft, auth=oauth (a token from --from-oauth-token-cmd) or auth=password", s, v[0])
				}
			default:
				return nil, usagef("account %q: unknown option %q (known: tls, auth)", s, k)
			}
		}
	}
	if u.Security == Plaintext && !IsLoopback(u.Host) {
		return nil, usagef("account %q: plaintext IMAP (tls=none) is refused to %s: the password and every message would cross the network readable. Use imaps:// or imap:// (STARTTLS); plaintext is allowed only to a loopback address such as 127.0.0.1", s, u.Host)
	}
	return u, nil
}

func looksLikeBridgeHost(h string) bool {
	if strings.Contains(h, ":") {
		return true
	}
	return net.ParseIP(strings.Trim(h, "[]")) != nil || strings.EqualFold(h, "localhost")
}

// IsLoopback reports whether host is a loopback address or "localhost".
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func redactURL(s string) string {
	scheme, rest, _ := strings.Cut(s, "://")
	at := strings.LastIndexByte(rest, '@')
	if at < 0 {
		return s
	}
	user := rest[:at]
	if i := strings.IndexByte(user, ':'); i >= 0 {
		user = user[:i] + ":***"
	}
	return scheme + "://" + user + rest[at:]
}
