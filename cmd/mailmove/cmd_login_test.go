package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/account/oauth"
	"github.com/mailmove/mailmove/account/oauth/oauthtest"
	"github.com/mailmove/mailmove/internal/testmail"
)

// fixedToken is a token source for seeding the test servers.
type fixedToken string

func (f fixedToken) AccessToken(context.Context, bool) (string, error) { return string(f), nil }

// oauthWorld is a fake authorisation server, an IMAP server that takes
// only its tokens, and the environment that points mailmove at both.
type oauthWorld struct {
	as   *oauthtest.Server
	imap *account.MemServer
	ca   string
	cfg  string // XDG_CONFIG_HOME
	url  string // the account URL
	env  []string
	// uses counts the sign-ins per access token
	mu   sync.Mutex
	uses map[string]int
	// oneUse makes every access token good for one sign-in only: the
	// next connection finds it expired
	oneUse bool
}

func newOAuthWorld(t *testing.T, auth, secret string, implicit bool, mechs ...string) *oauthWorld {
	t.Helper()
	w := &oauthWorld{as: oauthtest.New("my-client", secret), uses: map[string]int{}}
	t.Cleanup(w.as.Close)
	tc, caPEM, err := oauthtest.TLS()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w.ca = filepath.Join(dir, "ca.pem")
	os.WriteFile(w.ca, caPEM, 0o600)
	w.cfg = filepath.Join(dir, "config")
	w.imap, err = account.ServeMemoryOAuth("me@example.com", tc, account.OAuthServerOptions{
		Mechanisms: mechs, ImplicitTLS: implicit,
		Valid: func(user, token string) bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.uses[token]++
			return w.as.Valid(user, token) && (!w.oneUse || w.uses[token] == 1)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.imap.Close() })
	scheme := "imap"
	if implicit {
		scheme = "imaps"
	}
	w.url = scheme + "://me@example.com@" + w.imap.Addr + "?auth=" + auth
	w.env = []string{oauth.EndpointsEnv + "=" + w.as.URL, "XDG_CONFIG_HOME=" + w.cfg}
	return w
}

// seed puts n messages into INBOX and Archive.
func (w *oauthWorld) seed(t *testing.T, n int) {
	at, _ := w.as.Issue()
	u, _ := account.ParseURL(w.url)
	testmail.Put(t, &account.Config{URL: u, CAFile: w.ca, Token: fixedToken(at)}, testmail.Gen(n, []string{"INBOX", "Archive"}, 7))
}

// login runs mailmove login; answer gets each line of its stderr and may
// act on it (approve the device code, follow the URL).
func (w *oauthWorld) login(t *testing.T, answer func(line string), extra ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"login", w.url, "--oauth-client-id", "my-client", "--ca-file", w.ca}, extra...)...)
	cmd.Env = append(os.Environ(), w.env...)
	var o, e bytes.Buffer
	cmd.Stdout = &o
	pr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		e.WriteString(sc.Text() + "\n")
		answer(sc.Text())
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

var (
	deviceCodeRE = regexp.MustCompile(`^\s+([A-F0-9]{8})$`)
	authURLRE    = regexp.MustCompile(`^\s+(http://127\.0\.0\.1:\d+/authorize\?\S+)$`)
)

// approveDevice is the user entering the printed code on the printed page.
func (w *oauthWorld) approveDevice(t *testing.T) func(string) {
	return func(l string) {
		if m := deviceCodeRE.FindStringSubmatch(l); m != nil {
			resp, err := http.Get(w.as.URL + "/device?user_code=" + m[1])
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("approve: %v %v", resp, err)
			}
		}
	}
}

// browse is the user opening the printed URL in a browser.
func browse(t *testing.T) func(string) {
	return func(l string) {
		if m := authURLRE.FindStringSubmatch(l); m != nil {
			go func() {
				resp, err := http.Get(m[1])
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("browser: %v %v", resp, err)
				}
			}()
		}
	}
}

// tokens returns the secrets of the token file.
func (w *oauthWorld) tokens(t *testing.T, provider string) *oauth.Stored {
	t.Helper()
	path := filepath.Join(w.cfg, "mailmove", "tokens", provider+"-me@example.com.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %o, want 600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("token directory mode %o, want 700", di.Mode().Perm())
	}
	s, err := oauth.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noSecrets(t *testing.T, what string, s *oauth.Stored, texts ...string) {
	t.Helper()
	for _, x := range texts {
		for _, secret := range []string{s.Token.AccessToken, s.Token.RefreshToken, "at-", "rt-"} {
			if secret != "" && strings.Contains(x, secret) {
				t.Errorf("%s: a token (%.6s...) appears in the output:\n%s", what, secret, x)
			}
		}
	}
}

// TestLoginMicrosoftDeviceThenExport: mailmove login by device code over
// STARTTLS, then a cron-like export with the stored token: every access
// token is good for one sign-in only, so the export's later connections
// find theirs expired and refresh it (Microsoft rotates the refresh token,
// which is saved). No token in argv, output or --debug-imap.
func TestLoginMicrosoftDeviceThenExport(t *testing.T) {
	w := newOAuthWorld(t, "microsoft", "", false)
	w.as.Rotate = true
	w.seed(t, 30)
	stdout, stderr, code := w.login(t, w.approveDevice(t))
	if code != 0 || !strings.Contains(stdout, "Signed in as me@example.com") || !strings.Contains(stdout, "IMAP sign-in to "+w.imap.Addr+" works: 2 folders") {
		t.Fatalf("login: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, w.as.URL+"/device") {
		t.Errorf("the login did not print the page to open:\n%s", stderr)
	}
	first := w.tokens(t, "microsoft")

	w.mu.Lock()
	w.oneUse = true
	w.mu.Unlock()
	out := filepath.Join(t.TempDir(), "a")
	args := []string{"export", "--from", w.url, "--from-ca-file", w.ca, "--to", "mbox", "--out", out, "--debug-imap"}
	o, e, code := runCmdEnv(t, w.env, args...)
	if code != 0 {
		t.Fatalf("export: exit %d\n%s", code, e)
	}
	got := contents(t, out)
	if len(got["INBOX"])+len(got["Archive"]) != 30 {
		t.Fatalf("exported %d+%d messages, want 30", len(got["INBOX"]), len(got["Archive"]))
	}
	if w.as.Refreshes() == 0 {
		t.Error("no refresh although the access tokens expired")
	}
	last := w.tokens(t, "microsoft")
	if last.Token.RefreshToken == first.Token.RefreshToken || !w.as.IsRefreshToken(last.Token.RefreshToken) {
		t.Error("the rotated refresh token was not saved")
	}
	if !strings.Contains(e, "AUTHENTICATE XOAUTH2 [credentials redacted]") {
		t.Errorf("--debug-imap shows no redacted AUTHENTICATE:\n%.2000s", e)
	}
	noSecrets(t, "export", first, o, e, strings.Join(args, " "))
	noSecrets(t, "export", last, o, e, strings.Join(args, " "))
	noSecrets(t, "login", last, stdout, stderr)
}

// TestLoginGoogleLoopbackThenFolders: mailmove login by the loopback
// redirect with PKCE (client secret from a 0600 file) on implicit TLS,
// then folders with the stored token.
func TestLoginGoogleLoopbackThenFolders(t *testing.T) {
	w := newOAuthWorld(t, "google", "shh", true, "XOAUTH2", "OAUTHBEARER")
	w.seed(t, 6)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("shh\n"), 0o644)
	if _, e, code := w.login(t, func(string) {}, "--oauth-client-secret-file", secret); code != 2 || !strings.Contains(e, "chmod 600") {
		t.Fatalf("a secret file others can read: exit %d, %s", code, e)
	}
	os.Chmod(secret, 0o600)
	stdout, stderr, code := w.login(t, browse(t), "--oauth-client-secret-file", secret)
	if code != 0 {
		t.Fatalf("login: exit %d\n%s%s", code, stdout, stderr)
	}
	if !w.as.VerifierChecked() {
		t.Error("the code was exchanged without a matching PKCE verifier")
	}
	s := w.tokens(t, "google")
	if s.ClientSecret != "shh" {
		t.Error("client secret not kept for refreshes")
	}
	o, e, code := runCmdEnv(t, w.env, "folders", "--from", w.url, "--from-ca-file", w.ca, "--debug-imap")
	if code != 0 || !strings.Contains(o, "Archive") {
		t.Fatalf("folders: exit %d\n%s%s", code, o, e)
	}
	noSecrets(t, "folders", w.tokens(t, "google"), o, e)
}

// TestRevokedTokenExit1: a cron run whose sign-in was revoked (or never
// made) exits 1 and names the exact mailmove login to run.
func TestRevokedTokenExit1(t *testing.T) {
	w := newOAuthWorld(t, "microsoft", "", true)
	out := filepath.Join(t.TempDir(), "a")
	args := []string{"export", "--from", w.url, "--from-ca-file", w.ca, "--to", "eml", "--out", out}
	_, e, code := runCmdEnv(t, w.env, args...)
	want := "mailmove login '" + w.url + "' --oauth-client-id"
	if code != 1 || !strings.Contains(e, "no OAuth2 sign-in is stored") || !strings.Contains(e, want) {
		t.Fatalf("never signed in: exit %d, %s\nwant exit 1 and %q", code, e, want)
	}
	if _, e, code := w.login(t, w.approveDevice(t)); code != 0 {
		t.Fatalf("login: %d %s", code, e)
	}
	w.as.RevokeAll()
	_, e, code = runCmdEnv(t, w.env, args...)
	want = "mailmove login '" + w.url + "' --oauth-client-id my-client"
	if code != 1 || !strings.Contains(e, "expired or was revoked") || !strings.Contains(e, want) {
		t.Fatalf("revoked: exit %d, %s\nwant exit 1 and %q", code, e, want)
	}
}

// TestOAuthTokenCmd: --from-oauth-token-cmd and --to-oauth-token-cmd give
// the access token (a keyring helper); migrate signs in on both sides with
// them, and the token shows nowhere.
func TestOAuthTokenCmd(t *testing.T) {
	src := newOAuthWorld(t, "oauth", "", false, "OAUTHBEARER")
	src.seed(t, 12)
	dst := newOAuthWorld(t, "microsoft", "", true)
	dir := t.TempDir()
	fromTok, _ := src.as.Issue()
	toTok, _ := dst.as.Issue()
	os.WriteFile(filepath.Join(dir, "from"), []byte(fromTok+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "to"), []byte(toTok+"\n"), 0o600)
	args := []string{"migrate", "--from", src.url, "--from-ca-file", src.ca, "--from-oauth-token-cmd", "cat " + filepath.Join(dir, "from"),
		"--to", dst.url, "--to-ca-file", dst.ca, "--to-oauth-token-cmd", "cat " + filepath.Join(dir, "to"),
		"--staging", filepath.Join(dir, "staging"), "--debug-imap"}
	o, e, code := runCmdEnv(t, dst.env, args...)
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s", code, e)
	}
	u, _ := account.ParseURL(dst.url)
	held := testmail.Held(t, &account.Config{URL: u, CAFile: dst.ca, Token: fixedToken(toTok)})
	if n := len(held["INBOX"]) + len(held["Archive"]); n != 12 {
		t.Fatalf("migrated %d messages, want 12", n)
	}
	for _, tok := range []string{fromTok, toTok} {
		if strings.Contains(o+e+strings.Join(args, " "), tok) {
			t.Errorf("token %.6s... in argv or output", tok)
		}
	}
	// a token command with a password account is a usage error
	_, e, code = runCmdEnv(t, nil, "folders", "--from", "imaps://a@127.0.0.1:1", "--from-oauth-token-cmd", "true")
	if code != 2 || !strings.Contains(e, "auth=") {
		t.Errorf("token cmd with a password URL: exit %d %s", code, e)
	}
}

// TestLoginCheckFails: the sign-in is stored, but the IMAP server does
// not take the token (here: it trusts another authorisation server): exit
// 1, saying so; --check=false skips the check.
func TestLoginCheckFails(t *testing.T) {
	w := newOAuthWorld(t, "microsoft", "", true)
	other := oauthtest.New("my-client", "")
	defer other.Close()
	w.env[0] = oauth.EndpointsEnv + "=" + other.URL
	approve := (&oauthWorld{as: other}).approveDevice(t)
	stdout, stderr, code := w.login(t, approve)
	if code != 1 || !strings.Contains(stdout, "Signed in as") || !strings.Contains(stderr, "the sign-in is stored, but the IMAP server did not take the token") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	w.tokens(t, "microsoft")
	if _, _, code := w.login(t, approve, "--check=false"); code != 0 {
		t.Fatalf("--check=false: exit %d", code)
	}
}

// TestLoginUsage: login wants an OAuth2 account and a client ID.
func TestLoginUsage(t *testing.T) {
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"login", "imaps://a@example.org"}, "signs in with a password"},
		{[]string{"login", "outlook://me@example.com"}, "--oauth-client-id is required"},
		{[]string{"login"}, "want one account URL"},
	} {
		_, e, code := runCmdEnv(t, env, c.args...)
		if code != 2 || !strings.Contains(e, c.msg) {
			t.Errorf("%v: exit %d %q, want 2 and %q", c.args, code, e, c.msg)
		}
	}
	o, _, code := runCmdEnv(t, env, "help", "login")
	if code != 0 || !strings.Contains(o, "oauth-client-secret-file") {
		t.Errorf("help login: %d %s", code, o)
	}
	_ = io.Discard
}
