package oauth_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/account/oauth"
	"github.com/mailmove/mailmove/account/oauth/oauthtest"
	"golang.org/x/oauth2"
)

func setup(t *testing.T, secret string) *oauthtest.Server {
	t.Helper()
	as := oauthtest.New("my-client", secret)
	t.Cleanup(as.Close)
	t.Setenv(oauth.EndpointsEnv, as.URL)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	return as
}

func mustURL(t *testing.T, s string) *account.URL {
	t.Helper()
	u, err := account.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func checkPerms(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %o, want 600", path, fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("%s: mode %o, want 700", filepath.Dir(path), di.Mode().Perm())
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".token-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// TestSaveAtomic: the token file is 0600 in a 0700 directory (tightened
// if it existed looser), replaced whole, no temporary file left.
func TestSaveAtomic(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	path, err := oauth.Path("google", "me+x@gmail.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, rt := range []string{"rt-1", "rt-2"} {
		if err := oauth.Save(path, &oauth.Stored{Provider: "google", User: "me+x@gmail.com", ClientID: "c", Token: &oauth2.Token{RefreshToken: rt}}); err != nil {
			t.Fatal(err)
		}
	}
	checkPerms(t, path)
	s, err := oauth.Load(path)
	if err != nil || s.Token.RefreshToken != "rt-2" {
		t.Fatalf("Load: %+v, %v", s, err)
	}
	if p2, _ := oauth.Path("google", "../../etc/passwd"); filepath.Dir(p2) != filepath.Dir(path) {
		t.Errorf("a user name left the token directory: %s", p2)
	}
}

// TestSourceRefreshRotation: an expired access token is refreshed; the
// rotated refresh token is saved (the old one is dead at the server); a
// fresh ask refreshes even a token that has not expired.
func TestSourceRefreshRotation(t *testing.T) {
	as := setup(t, "")
	as.Rotate = true
	u := mustURL(t, "outlook://me@example.com")
	_, rt := as.Issue()
	path, _ := oauth.Path("microsoft", u.User)
	oauth.Save(path, &oauth.Stored{Provider: "microsoft", User: u.User, ClientID: "my-client",
		Token: &oauth2.Token{AccessToken: "at-old", RefreshToken: rt, Expiry: time.Now().Add(-time.Hour)}})
	src, err := oauth.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	at, err := src.AccessToken(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if at == "at-old" || !as.Valid(u.User, at) {
		t.Fatalf("got %q, want a new valid access token", at)
	}
	s, _ := oauth.Load(path)
	if s.Token.RefreshToken == rt || !as.IsRefreshToken(s.Token.RefreshToken) || as.IsRefreshToken(rt) {
		t.Errorf("rotated refresh token not saved: file has %q (old %q)", s.Token.RefreshToken, rt)
	}
	checkPerms(t, path)
	if again, _ := src.AccessToken(context.Background(), false); again != at {
		t.Errorf("a valid token was refreshed again")
	}
	n := as.Refreshes()
	fresh, err := src.AccessToken(context.Background(), true)
	if err != nil || fresh == at || as.Refreshes() != n+1 {
		t.Errorf("fresh ask: %q, %v (refreshes %d -> %d)", fresh, err, n, as.Refreshes())
	}
	// A new process (new Source) uses the saved, rotated token.
	src2, _ := oauth.Open(u)
	if _, err := src2.AccessToken(context.Background(), true); err != nil {
		t.Errorf("refresh with the saved rotated token: %v", err)
	}
	// src still holds the refresh token src2 rotated away: it takes the
	// file's instead of failing with invalid_grant.
	if _, err := src.AccessToken(context.Background(), true); err != nil {
		t.Errorf("a second run's rotation: %v", err)
	}
}

// TestSourceRevoked: a revoked refresh token, or none stored, is a
// NeedLoginError naming the mailmove login to run.
func TestSourceRevoked(t *testing.T) {
	as := setup(t, "shh")
	u := mustURL(t, "gmail://me@gmail.com")
	var nl *oauth.NeedLoginError
	if _, err := oauth.Open(u); !errors.As(err, &nl) || !strings.Contains(nl.Command, "mailmove login gmail://me@gmail.com --oauth-client-id") {
		t.Fatalf("nothing stored: got %v", err)
	}
	path, _ := oauth.Path("google", u.User)
	os.MkdirAll(filepath.Dir(path), 0o700)
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := oauth.Open(u); !errors.As(err, &nl) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged file: got %v, want a NeedLoginError", err)
	}
	_, rt := as.Issue()
	oauth.Save(path, &oauth.Stored{Provider: "google", User: u.User, ClientID: "my-client", ClientSecret: "shh", Token: &oauth2.Token{RefreshToken: rt}})
	as.RevokeAll()
	src, err := oauth.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.AccessToken(context.Background(), false)
	if !errors.As(err, &nl) {
		t.Fatalf("revoked: got %v, want NeedLoginError", err)
	}
	want := "mailmove login gmail://me@gmail.com --oauth-client-id my-client --oauth-client-secret-file FILE"
	if nl.Command != want || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("message: %v\nwant the command %q", err, want)
	}
}

// readUntil reads lines from r until re matches one, and returns the
// submatch.
func readUntil(t *testing.T, r io.Reader, re *regexp.Regexp) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, r)
			return m[1]
		}
	}
	t.Error("the login printed no line matching", re)
	return ""
}

// TestLoginDevice: Microsoft's device code flow: the code printed, the
// user approves on the page printed, the token is stored, with the scopes
// of the issue.
func TestLoginDevice(t *testing.T) {
	as := setup(t, "")
	u := mustURL(t, "outlook://me@example.com")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := oauth.Login(context.Background(), u, oauth.LoginOptions{ClientID: "my-client", Out: pw})
		pw.Close()
		done <- err
	}()
	code := readUntil(t, pr, regexp.MustCompile(`^\s+([A-F0-9]{8})$`))
	resp, err := http.Get(as.URL + "/device?user_code=" + code)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("approve: %v %v", resp, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	path, _ := oauth.Path("microsoft", u.User)
	checkPerms(t, path)
	s, err := oauth.Load(path)
	if err != nil || !as.IsRefreshToken(s.Token.RefreshToken) {
		t.Fatalf("stored: %+v %v", s, err)
	}
	if sc := as.Scopes(); len(sc) != 1 || sc[0] != "https://outlook.office.com/IMAP.AccessAsUser.All offline_access" {
		t.Errorf("scopes %q", sc)
	}
}

// TestLoginLoopback: Google's loopback redirect with PKCE: the URL
// printed, the browser (here: an HTTP client following the redirect)
// comes back to 127.0.0.1, the code is exchanged with the verifier.
func TestLoginLoopback(t *testing.T) {
	as := setup(t, "shh")
	u := mustURL(t, "gmail://me@gmail.com")
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := oauth.Login(context.Background(), u, oauth.LoginOptions{ClientID: "my-client", ClientSecret: "shh", Out: pw})
		pw.Close()
		done <- err
	}()
	authURL := readUntil(t, pr, regexp.MustCompile(`^\s+(http://127\.0\.0\.1:\d+/authorize\?\S+)$`))
	resp, err := http.Get(authURL)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("browser: %v %v", resp, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !as.VerifierChecked() {
		t.Error("no PKCE verifier was checked")
	}
	if !strings.Contains(authURL, "code_challenge_method=S256") || !strings.Contains(authURL, "access_type=offline") {
		t.Errorf("auth URL %s", authURL)
	}
	if sc := as.Scopes(); len(sc) != 1 || sc[0] != "https://mail.google.com/" {
		t.Errorf("scopes %q", sc)
	}
	path, _ := oauth.Path("google", u.User)
	checkPerms(t, path)
	s, err := oauth.Load(path)
	if err != nil || s.ClientSecret != "shh" || !as.IsRefreshToken(s.Token.RefreshToken) {
		t.Fatalf("stored: %+v %v", s, err)
	}
}

// TestLoginNeedsClient: no client ID (or, for Google, no secret) is a
// usage error that says where to get one; nothing is hard-coded.
func TestLoginNeedsClient(t *testing.T) {
	setup(t, "")
	var ue *account.UsageError
	if _, err := oauth.Login(context.Background(), mustURL(t, "outlook://me@example.com"), oauth.LoginOptions{Out: io.Discard}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--oauth-client-id") {
		t.Errorf("no client ID: %v", err)
	}
	if _, err := oauth.Login(context.Background(), mustURL(t, "gmail://me@gmail.com"), oauth.LoginOptions{ClientID: "x", Out: io.Discard}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "--oauth-client-secret-file") {
		t.Errorf("no secret: %v", err)
	}
}

// TestCommandSource: the token command's first line is the token, asked
// again only when fresh.
func TestCommandSource(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(dir, "n")
	cs := &oauth.CommandSource{Command: "echo x >> " + counter + "; echo tok-$(wc -l < " + counter + "); echo second line", Flag: "--from-oauth-token-cmd"}
	a, err := cs.AccessToken(context.Background(), false)
	if err != nil || a != "tok-1" {
		t.Fatalf("%q %v", a, err)
	}
	if b, _ := cs.AccessToken(context.Background(), false); b != "tok-1" {
		t.Errorf("not fresh: %q", b)
	}
	if c, _ := cs.AccessToken(context.Background(), true); c != "tok-2" {
		t.Errorf("fresh: %q", c)
	}
	bad := &oauth.CommandSource{Command: "true", Flag: "--from-oauth-token-cmd"}
	if _, err := bad.AccessToken(context.Background(), false); err == nil {
		t.Error("empty output accepted")
	}
}
