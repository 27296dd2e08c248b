package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/mailmove/mailmove/account"
	"golang.org/x/oauth2"
)

// LoginOptions is what a sign-in needs besides the account.
type LoginOptions struct {
	// ClientID and ClientSecret are of the user's own OAuth2 client.
	ClientID, ClientSecret string
	// Out gets the instructions (the URL to open, the code to enter).
	Out io.Writer
}

// ErrLoginDenied says the user (or the server) refused the sign-in.
var ErrLoginDenied = errors.New("the sign-in was refused or cancelled")

// Login runs the provider's sign-in flow for u and stores the tokens. It
// returns the token file's path.
func Login(ctx context.Context, u *account.URL, o LoginOptions) (string, error) {
	p, err := ProviderFor(u.Auth)
	if err != nil {
		return "", err
	}
	if o.ClientID == "" {
		return "", &account.UsageError{Msg: "--oauth-client-id is required: the client ID of your own OAuth2 app (see the README, \"Signing in to Gmail and Microsoft with OAuth2\", for how to register one)"}
	}
	if p.SecretRequired && o.ClientSecret == "" {
		return "", &account.UsageError{Msg: "--oauth-client-secret-file is required for " + p.Name + ": a file (chmod 600) holding the client secret of your OAuth2 app"}
	}
	var tok *oauth2.Token
	if p.DeviceFlow {
		tok, err = deviceLogin(ctx, p, u, o)
	} else {
		tok, err = loopbackLogin(ctx, p, u, o)
	}
	if err != nil {
		return "", err
	}
	if tok.RefreshToken == "" {
		return "", fmt.Errorf("the authorisation server gave no refresh token, so unattended runs could not go on; check that the app asks for offline access")
	}
	path, err := Path(p.Name, u.User)
	if err != nil {
		return "", err
	}
	s := &Stored{Provider: p.Name, User: u.User, ClientID: o.ClientID, ClientSecret: o.ClientSecret, Token: tok}
	if err := Save(path, s); err != nil {
		return "", err
	}
	return path, nil
}

// deviceLogin is the device code flow (RFC 8628): the user opens a URL on
// any device and enters a code; works over SSH and on headless servers.
func deviceLogin(ctx context.Context, p *Provider, u *account.URL, o LoginOptions) (*oauth2.Token, error) {
	cfg := p.Config(o.ClientID, o.ClientSecret, "")
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting the device sign-in at %s: %w", p.Endpoint.DeviceAuthURL, err)
	}
	fmt.Fprintf(o.Out, "To sign in %s, open this page on any device:\n\n  %s\n\nand enter the code:\n\n  %s\n\nWaiting for the sign-in", u.User, da.VerificationURI, da.UserCode)
	if !da.Expiry.IsZero() {
		fmt.Fprintf(o.Out, " (the code is good until %s)", da.Expiry.Local().Format("15:04"))
	}
	fmt.Fprintln(o.Out, "...")
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "access_denied" || re.ErrorCode == "authorization_declined" || re.ErrorCode == "expired_token") {
			return nil, fmt.Errorf("%w (%s): run mailmove login again", ErrLoginDenied, re.ErrorCode)
		}
		return nil, fmt.Errorf("waiting for the device sign-in: %w", err)
	}
	return tok, nil
}

// loopbackLogin is the installed-app flow with a loopback redirect and
// PKCE (RFC 8252, RFC 7636): the browser comes back to a port on
// 127.0.0.1 that only this process listens on.
func loopbackLogin(ctx context.Context, p *Provider, u *account.URL, o LoginOptions) (*oauth2.Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	redirect := "http://" + ln.Addr().String() + "/"
	cfg := p.Config(o.ClientID, o.ClientSecret, redirect)
	verifier := oauth2.GenerateVerifier()
	var sb [16]byte
	rand.Read(sb[:])
	state := hex.EncodeToString(sb[:])
	authURL := cfg.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("prompt", "consent"), oauth2.SetAuthURLParam("login_hint", u.User))

	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var res result
		switch {
		case q.Get("state") != state:
			http.Error(w, "This answer does not belong to the sign-in mailmove started; ignored.", http.StatusBadRequest)
			return
		case q.Get("error") != "":
			res.err = fmt.Errorf("%w: %s %s", ErrLoginDenied, q.Get("error"), q.Get("error_description"))
			fmt.Fprintf(w, "<p>mailmove: the sign-in failed: %s. You can close this tab.</p>", html.EscapeString(q.Get("error")))
		case q.Get("code") == "":
			http.Error(w, "no code in the answer", http.StatusBadRequest)
			return
		default:
			res.code = q.Get("code")
			fmt.Fprint(w, "<p>mailmove: signed in. You can close this tab and go back to the terminal.</p>")
		}
		select {
		case got <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	fmt.Fprintf(o.Out, "To sign in %s, open this URL in a browser on this machine:\n\n  %s\n\nWaiting for the browser to come back to %s ...\n(On a machine without a browser: ssh -L %s:%s HOST from your desktop, then open the URL there.)\n",
		u.User, authURL, redirect, portOf(ln.Addr()), ln.Addr())
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, res.err
	}
	tok, err := cfg.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchanging the sign-in code at %s: %w", p.Endpoint.TokenURL, err)
	}
	return tok, nil
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}
