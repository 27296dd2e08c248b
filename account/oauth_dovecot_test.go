package account_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/account/oauth/oauthtest"
	"github.com/mailmove/mailmove/internal/testmail"
)

type token string

func (t token) AccessToken(context.Context, bool) (string, error) { return string(t), nil }

// dovecotOAuth turns on XOAUTH2 and OAUTHBEARER in a test Dovecot, with
// its oauth2 passdb asking the fake authorisation server's introspection
// endpoint about tokens.
func dovecotOAuth(t *testing.T) (*testmail.Dovecot, *oauthtest.Server) {
	t.Helper()
	d := testmail.StartDovecot(t)
	as := oauthtest.New("client", "")
	t.Cleanup(as.Close)
	as.User = "src"
	ext := filepath.Join(d.Dir, "oauth2.conf.ext")
	os.WriteFile(ext, []byte(fmt.Sprintf("introspection_mode = post\nintrospection_url = %s/introspect\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n", as.URL)), 0o644)
	conf := filepath.Join(d.Dir, "dovecot.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\nauth_mechanisms = plain login xoauth2 oauthbearer\nauth_failure_delay = 0\npassdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = %s\n}\n", ext)
	f.Close()
	if out, err := exec.Command("doveadm", "-c", conf, "reload").CombinedOutput(); err != nil {
		t.Fatalf("doveadm reload: %v\n%s", err, out)
	}
	// the reload is done when new logins see the new mechanisms
	for i := 0; ; i++ {
		out, _ := exec.Command("bash", "-c", "exec 3<>/dev/tcp/"+strings.Replace(d.IMAPAddr, ":", "/", 1)+"; printf 'a CAPABILITY\\r\\na LOGOUT\\r\\n' >&3; cat <&3").Output()
		if bytes.Contains(out, []byte("AUTH=XOAUTH2")) {
			break
		}
		if i == 100 {
			t.Fatalf("Dovecot does not announce AUTH=XOAUTH2 after the reload:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return d, as
}

// TestOAuthDovecot signs in to a real Dovecot (oauth2 passdb) with
// XOAUTH2 over STARTTLS and implicit TLS; a refused token is an
// OAuthError, Dovecot's failure challenge answered as it expects (no
// hang: the idle timeout is short).
func TestOAuthDovecot(t *testing.T) {
	d, as := dovecotOAuth(t)
	good, _ := as.Issue()
	for _, c := range []struct{ scheme, addr string }{{"imap", d.IMAPAddr}, {"imaps", d.TLSAddr}} {
		u, err := account.ParseURL(c.scheme + "://src@" + c.addr + "?auth=oauth")
		if err != nil {
			t.Fatal(err)
		}
		var dbg bytes.Buffer
		cfg := &account.Config{URL: u, CAFile: filepath.Join(d.Dir, "cert.pem"), Token: token(good), IdleTimeout: 10 * time.Second, Debug: &dbg}
		conn, err := cfg.Dial(context.Background())
		if err != nil {
			b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
			t.Fatalf("%s: %v\n%s\n%s", c.scheme, err, dbg.String(), b)
		}
		if _, err := conn.List("", "*", nil).Collect(); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if strings.Contains(dbg.String(), good) {
			t.Errorf("token in the debug log")
		}
	}
	// a refused token, on STARTTLS (Dovecot delays failures: one case)
	u, _ := account.ParseURL("imap://src@" + d.IMAPAddr + "?auth=oauth")
	var dbg bytes.Buffer
	cfg := &account.Config{URL: u, CAFile: filepath.Join(d.Dir, "cert.pem"), Token: token("at-not-issued"), IdleTimeout: 10 * time.Second, Debug: &dbg}
	_, err := cfg.Dial(context.Background())
	var oe *account.OAuthError
	if !errors.As(err, &oe) || oe.Status != "401" {
		t.Fatalf("a token Dovecot refuses: got %v, want an OAuthError with Dovecot's status 401", err)
	}
	if !strings.Contains(dbg.String(), "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("Dovecot's NO not seen after the challenge:\n%s", dbg.String())
	}
}
