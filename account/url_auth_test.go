package account

import (
	"errors"
	"testing"
)

// TestParseURLAuth: ?auth= and the gmail:// and outlook:// presets, and
// that String gives back a URL that parses to the same account.
func TestParseURLAuth(t *testing.T) {
	cases := []struct {
		in, str, user, host string
		port                int
		auth                Auth
		sec                 Security
	}{
		{"gmail://me@gmail.com", "gmail://me@gmail.com", "me@gmail.com", "imap.gmail.com", 993, AuthGoogle, ImplicitTLS},
		{"outlook://me@example.com", "outlook://me@example.com", "me@example.com", "outlook.office365.com", 993, AuthMicrosoft, ImplicitTLS},
		{"gmail://me@gmail.com?auth=password", "gmail://me@gmail.com@imap.gmail.com:993?auth=password", "me@gmail.com", "imap.gmail.com", 993, AuthPassword, ImplicitTLS},
		{"gmail://me@gmail.com@127.0.0.1:1993", "gmail://me@gmail.com@127.0.0.1:1993", "me@gmail.com", "127.0.0.1", 1993, AuthGoogle, ImplicitTLS},
		{"imaps://me@gmail.com@imap.gmail.com?auth=google", "imaps://me@gmail.com@imap.gmail.com:993?auth=google", "me@gmail.com", "imap.gmail.com", 993, AuthGoogle, ImplicitTLS},
		{"imaps://me@outlook.com@outlook.office365.com?auth=microsoft", "imaps://me@outlook.com@outlook.office365.com:993?auth=microsoft", "me@outlook.com", "outlook.office365.com", 993, AuthMicrosoft, ImplicitTLS},
		{"imap://a@127.0.0.1:1143?auth=oauth&tls=starttls", "imap://a@127.0.0.1:1143?auth=oauth", "a", "127.0.0.1", 1143, AuthOAuth, StartTLS},
		{"imaps://a@example.org", "imaps://a@example.org:993", "a", "example.org", 993, AuthPassword, ImplicitTLS},
	}
	for _, c := range cases {
		u, err := ParseURL(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if u.User != c.user || u.Host != c.host || u.Port != c.port || u.Auth != c.auth || u.Security != c.sec {
			t.Errorf("%s: got %+v", c.in, u)
		}
		if u.String() != c.str {
			t.Errorf("%s: String() = %q, want %q", c.in, u.String(), c.str)
		}
		u2, err := ParseURL(u.String())
		if err != nil || *u2 != *u {
			t.Errorf("%s: String() does not parse back: %+v, %v", c.in, u2, err)
		}
	}
	var ue *UsageError
	if _, err := ParseURL("imaps://a@example.org?auth=kerberos"); !errors.As(err, &ue) {
		t.Errorf("auth=kerberos: got %v, want a UsageError", err)
	}
	if !AuthGoogle.IsOAuth() || AuthPassword.IsOAuth() || Auth("").IsOAuth() {
		t.Error("IsOAuth")
	}
}
