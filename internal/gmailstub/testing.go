package gmailstub

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailmove/mailmove/account"
)

// Password is the password of the stand-in's user in StartT.
const Password = "gm-app-password"

// StartT starts a stand-in for a test (user alice@gmail.com, password
// Password), stopped when the test ends.
func StartT(t testing.TB, o Options) *Server {
	t.Helper()
	if o.User == "" {
		o.User = "alice@gmail.com"
	}
	if o.Password == "" {
		o.Password = Password
	}
	s, err := Start(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Config is the account of the stand-in's user (imaps://, trusting the
// stand-in's certificate, the password in a 0600 file).
func (s *Server) Config(t testing.TB) *account.Config {
	t.Helper()
	u, err := account.ParseURL("imaps://" + s.o.User + "@" + s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(s.o.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &account.Config{URL: u, CAFile: s.CAFile, Password: account.PasswordSource{File: p}, IdleTimeout: 10 * time.Second}
}

// Mail makes a small message with a Message-ID and a body of about size bytes.
func Mail(id, subject string, size int) []byte {
	body := make([]byte, 0, size)
	for len(body) < size {
		body = append(body, fmt.Sprintf("line %d of %s\r\n", len(body), subject)...)
	}
	return []byte(fmt.Sprintf("From: Bob <bob@example.org>\r\nTo: alice@gmail.com\r\nSubject: %s\r\nMessage-ID: <%s>\r\nDate: Mon, 7 Apr 2025 10:00:00 +0000\r\n\r\n%s", subject, id, body))
}
