// Package oauth signs mailmove in to Google and Microsoft mail with OAuth2:
// the sign-in flows of `mailmove login` (Google: loopback redirect with
// PKCE; Microsoft: device code), the token files under
// $XDG_CONFIG_HOME/mailmove/tokens/, automatic refresh with rotated
// refresh tokens saved atomically, and access tokens from a command
// (--from-oauth-token-cmd).
//
// It gives access tokens to account.Dial through account.TokenSource; no
// token ever goes to argv or a log.
package oauth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/mailmove/mailmove/account"
	"golang.org/x/oauth2"
)

// EndpointsEnv names the environment variable that points every sign-in
// flow at another authorisation server (BASE/authorize, BASE/token,
// BASE/devicecode). It is for tests (a fake server on loopback); only
// https:// or a loopback http:// address is taken.
const EndpointsEnv = "MAILMOVE_OAUTH_ENDPOINTS"

// Scopes of the two providers, as their IMAP documentation asks.
var (
	GoogleScopes    = []string{"https://mail.google.com/"}
	MicrosoftScopes = []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}
)

// Provider is an OAuth2 authorisation server and how mailmove signs in
// with it.
type Provider struct {
	// Name is "google" or "microsoft" (the auth= of the account URL).
	Name string
	// Endpoint is where the flows and refreshes go.
	Endpoint oauth2.Endpoint
	// Scopes are asked for.
	Scopes []string
	// DeviceFlow is true for the device code flow (Microsoft), false for
	// the loopback redirect with PKCE (Google refuses the device flow for
	// mail scopes).
	DeviceFlow bool
	// SecretRequired says the token endpoint wants the client secret
	// (Google's desktop clients have one; Microsoft public clients not).
	SecretRequired bool
}

// ProviderFor returns the provider of an auth choice, with the endpoints
// of EndpointsEnv if set.
func ProviderFor(auth account.Auth) (*Provider, error) {
	var p *Provider
	switch auth {
	case account.AuthGoogle:
		p = &Provider{Name: "google", Scopes: GoogleScopes, SecretRequired: true, Endpoint: oauth2.Endpoint{
			AuthURL:  "https://accounts.google.com/o/oauth2/auth",
			TokenURL: "https://oauth2.googleapis.com/token",
		}}
	case account.AuthMicrosoft:
		p = &Provider{Name: "microsoft", Scopes: MicrosoftScopes, DeviceFlow: true, Endpoint: oauth2.Endpoint{
			AuthURL:       "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
			TokenURL:      "https://login.microsoftonline.com/common/oauth2/v2.0/token",
			DeviceAuthURL: "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
		}}
	default:
		return nil, &account.UsageError{Msg: fmt.Sprintf("auth=%s has no sign-in flow in mailmove: use auth=google or auth=microsoft, or give an access token with --from-oauth-token-cmd (or --to-oauth-token-cmd)", auth)}
	}
	if base := os.Getenv(EndpointsEnv); base != "" {
		bu, err := url.Parse(base)
		if err != nil || !(bu.Scheme == "https" || bu.Scheme == "http" && account.IsLoopback(hostOnly(bu.Host))) {
			return nil, &account.UsageError{Msg: fmt.Sprintf("%s=%q: want an https:// URL or http:// to a loopback address (it is for tests)", EndpointsEnv, base)}
		}
		base = strings.TrimSuffix(base, "/")
		p.Endpoint = oauth2.Endpoint{AuthURL: base + "/authorize", TokenURL: base + "/token", DeviceAuthURL: base + "/devicecode"}
	}
	return p, nil
}

func hostOnly(hp string) string {
	if h, _, err := net.SplitHostPort(hp); err == nil {
		return h
	}
	return hp
}

// Config is the oauth2 configuration for a client of p.
func (p *Provider) Config(clientID, clientSecret, redirect string) *oauth2.Config {
	ep := p.Endpoint
	if clientSecret == "" {
		ep.AuthStyle = oauth2.AuthStyleInParams // a public client
	}
	return &oauth2.Config{ClientID: clientID, ClientSecret: clientSecret, Endpoint: ep, Scopes: p.Scopes, RedirectURL: redirect}
}

// NeedLoginError says the account has no usable sign-in: none stored, or
// the refresh token expired or was revoked. The run cannot go on until the
// user runs Command.
type NeedLoginError struct {
	// Account is the account URL.
	Account string
	// Reason says what happened.
	Reason string
	// Command is the `mailmove login ...` to run.
	Command string
	// Err is the authorisation server's answer, if any.
	Err error
}

func (e *NeedLoginError) Error() string {
	return fmt.Sprintf("%s: %s. Sign in (a browser is needed once, on any device for Microsoft), then run this command again:\n  %s", e.Account, e.Reason, e.Command)
}

func (e *NeedLoginError) Unwrap() error { return e.Err }

// LoginCommand is the command line that signs u in.
func LoginCommand(u *account.URL, clientID string, secret bool) string {
	s := "mailmove login " + shellQuote(u.String())
	if clientID == "" {
		clientID = "YOUR_CLIENT_ID"
	}
	s += " --oauth-client-id " + shellQuote(clientID)
	if secret {
		s += " --oauth-client-secret-file FILE"
	}
	return s
}

// isInvalidGrant reports whether err is the authorisation server saying
// the refresh token is no good any more (expired, revoked, password
// changed).
func isInvalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./~+@:=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
