package account

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	cases := []struct {
		in                 string
		user, host         string
		port               int
		sec                Security
		bridge, usageError bool
	}{
		{in: "imaps://me@mailbox.org@imap.mailbox.org", user: "me@mailbox.org", host: "imap.mailbox.org", port: 993, sec: ImplicitTLS},
		{in: "imaps://me%40mailbox.org@imap.mailbox.org:1993", user: "me@mailbox.org", host: "imap.mailbox.org", port: 1993, sec: ImplicitTLS},
		{in: "imap://bob@mail.example.org", user: "bob", host: "mail.example.org", port: 143, sec: StartTLS},
		{in: "imap://bob@127.0.0.1:1143?tls=none", user: "bob", host: "127.0.0.1", port: 1143, sec: Plaintext},
		{in: "imap://bob@[::1]:1143?tls=none", user: "bob", host: "::1", port: 1143, sec: Plaintext},
		{in: "bridge://me@proton.me", user: "me@proton.me", host: "127.0.0.1", port: 1143, sec: StartTLS, bridge: true},
		{in: "bridge://me@proton.me@127.0.0.1:1144", user: "me@proton.me", host: "127.0.0.1", port: 1144, sec: StartTLS, bridge: true},
		{in: "bridge://me@proton.me@127.0.0.1:1143?tls=implicit", user: "me@proton.me", host: "127.0.0.1", port: 1143, sec: ImplicitTLS, bridge: true},
		{in: "imap://bob@mail.example.org?tls=none", usageError: true},
		{in: "imaps://bob:secret@mail.example.org", usageError: true},
		{in: "pop3://bob@mail.example.org", usageError: true},
		{in: "imaps://mail.example.org", usageError: true},
		{in: "imaps://bob@host/INBOX", usageError: true},
		{in: "mail.example.org", usageError: true},
	}
	for _, c := range cases {
		u, err := ParseURL(c.in)
		if c.usageError {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Errorf("%s: want a usage error, got %v", c.in, err)
			}
			if strings.Contains(c.in, "secret") && strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: the error repeats the password: %v", c.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if u.User != c.user || u.Host != c.host || u.Port != c.port || u.Security != c.sec || u.Bridge != c.bridge {
			t.Errorf("%s: got %+v", c.in, u)
		}
	}
}

func TestPasswordSources(t *testing.T) {
	ctx := context.Background()
	f := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(f, []byte("from-file\nsecond line\n"), 0o600)
	if pw, err := (PasswordSource{File: f}).Password(ctx); err != nil || pw != "from-file" {
		t.Errorf("file: %q %v", pw, err)
	}
	if pw, err := (PasswordSource{Command: "printf 'from-cmd\\r\\n'"}).Password(ctx); err != nil || pw != "from-cmd" {
		t.Errorf("command: %q %v", pw, err)
	}
	if _, err := (PasswordSource{Command: "exit 3"}).Password(ctx); err == nil {
		t.Error("a failing command gave a password")
	}
	t.Setenv("MAILMOVE_TEST_PW", "from-env")
	if pw, err := (PasswordSource{Env: "MAILMOVE_TEST_PW"}).Password(ctx); err != nil || pw != "from-env" {
		t.Errorf("env: %q %v", pw, err)
	}
}

func TestDebugLogRedactsLogin(t *testing.T) {
	var buf bytes.Buffer
	r := &redactor{w: &buf}
	r.Write([]byte("T1 LOGIN \"alice\" \"s3cret\"\r\nT2 SEL"))
	r.Write([]byte("ECT INBOX\r\nT3 AUTHENTICATE PLAIN AGFsaWNlAHMzY3JldA==\r\n"))
	out := buf.String()
	if strings.Contains(out, "s3cret") || strings.Contains(out, "AGFsaWNl") {
		t.Fatalf("credentials in the log: %q", out)
	}
	if !strings.Contains(out, "T2 SELECT INBOX") || !strings.Contains(out, "T1 LOGIN [credentials redacted]") {
		t.Fatalf("log: %q", out)
	}
}

// A server that greets and then never answers is given up on after the idle
// timeout, instead of hanging for ever as go-imap alone would.
func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"))
			go func() {
				buf := make([]byte, 1024)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	u, _ := ParseURL("imap://a@" + ln.Addr().String() + "?tls=none")
	cfg := &Config{URL: u, IdleTimeout: 300 * time.Millisecond}
	cfg.password, cfg.havePass = "x", true
	start := time.Now()
	_, err = cfg.Dial(context.Background())
	if err == nil {
		t.Fatal("login to a silent server succeeded")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %v to give up", d)
	}
}

func TestStartTLSRequired(t *testing.T) {
	// A server without STARTTLS is refused, never used in plaintext.
	srv, err := ServeMemory("a", "b", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	u, _ := ParseURL("imap://a@" + srv.Addr)
	cfg := &Config{URL: u}
	cfg.password, cfg.havePass = "b", true
	_, err = cfg.Dial(context.Background())
	if !errors.Is(err, ErrNoStartTLS) || !strings.Contains(err.Error(), "imaps://") {
		t.Fatalf("want ErrNoStartTLS and the imaps:// advice, got %v", err)
	}
}

func TestEncodeUTF7(t *testing.T) {
	for in, want := range map[string]string{
		"INBOX":              "INBOX",
		"Entwürfe":           "Entw&APw-rfe",
		"Projects/R&D":       "Projects/R&-D",
		"日本語":                "&ZeVnLIqe-",
		"Entwürfe/Übersicht": "Entw&APw-rfe/&ANw-bersicht",
		"~peter/mail/台北/日本語": "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	} {
		if got := encodeUTF7(in); got != want {
			t.Errorf("encodeUTF7(%q) = %q, want %q", in, got, want)
		}
	}
}

// An upload that takes longer than the idle timeout, while the server has
// nothing to say, does not time out the wait for its answer.
func TestIdleTimerCountsUploads(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &idleConn{Conn: a, idle: 200 * time.Millisecond}
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1)
		_, err := c.Read(buf) // waits for the server's answer
		readErr <- err
	}()
	go io.Copy(io.Discard, b) // the server reads the upload
	for i := 0; i < 10; i++ { // 10 x 100 ms of upload: 1 s > idle
		if _, err := c.Write(make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-readErr:
		t.Fatalf("the read gave up during the upload: %v", err)
	default:
	}
	// then silence: the read times out
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("read returned without data")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a silent connection was not given up on")
	}
}

// imaps:// at a plain IMAP port, and imap:// (STARTTLS) or plaintext at an
// implicit-TLS port, say which scheme to use instead, as a TLSModeError.
func TestTLSModeMismatch(t *testing.T) {
	plain, err := ServeMemory("a", "b", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	tlsSrv := quietTLSServer() // TLS, and never an IMAP greeting
	defer tlsSrv.Close()
	tlsAddr := tlsSrv.Listener.Addr().String()
	defer func(d time.Duration) { greetingProbeAfter = d }(greetingProbeAfter)
	greetingProbeAfter = 100 * time.Millisecond
	cases := []struct {
		url          string
		server, want Security
		advice       string
	}{
		{"imaps://a@" + plain.Addr, StartTLS, ImplicitTLS, "use imap://a@" + plain.Addr},
		{"bridge://a@" + plain.Addr + "?tls=implicit", StartTLS, ImplicitTLS, "use bridge://a@" + plain.Addr},
		{"imap://a@" + tlsAddr, ImplicitTLS, StartTLS, "use imaps://a@" + tlsAddr},
		{"imap://a@" + tlsAddr + "?tls=none", ImplicitTLS, Plaintext, "use imaps://a@" + tlsAddr},
		{"bridge://a@" + tlsAddr, ImplicitTLS, StartTLS, "use bridge://a@" + tlsAddr + "?tls=implicit"},
	}
	for _, c := range cases {
		u, err := ParseURL(c.url)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &Config{URL: u, IdleTimeout: 20 * time.Second, FlagPrefix: "from"}
		cfg.password, cfg.havePass = "b", true
		start := time.Now()
		_, err = cfg.Dial(context.Background())
		var me *TLSModeError
		if !errors.As(err, &me) || me.Server != c.server || me.Want != c.want {
			t.Errorf("%s: want a TLSModeError (server %v), got %v", c.url, c.server, err)
			continue
		}
		if !strings.Contains(err.Error(), c.advice) || strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: the advice does not say %q (or talks of certificates): %v", c.url, c.advice, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: took %v: the idle timeout, not the probe, ended the wait", c.url, d)
		}
	}
}

// Certificate hints name the account's real flags.
func TestHintsNameRealFlags(t *testing.T) {
	tlsSrv := quietTLSServer()
	defer tlsSrv.Close()
	u, _ := ParseURL("imaps://a@" + tlsSrv.Listener.Addr().String())
	for _, prefix := range []string{"from", "to"} {
		cfg := &Config{URL: u, FlagPrefix: prefix}
		cfg.password, cfg.havePass = "b", true
		_, err := cfg.Dial(context.Background())
		if err == nil || !strings.Contains(err.Error(), "--"+prefix+"-ca-file") || !strings.Contains(err.Error(), "--"+prefix+"-fingerprint") || strings.Contains(err.Error(), "*") {
			t.Errorf("%s: the hint does not name --%s-ca-file: %v", prefix, prefix, err)
		}
	}
	_, err := ParseURLFlag("imaps://bob:secret@example.org", "to")
	if err == nil || !strings.Contains(err.Error(), "--to-password-file") || !strings.Contains(err.Error(), "MAILMOVE_TO_PASSWORD") || strings.Contains(err.Error(), "--*") || strings.Contains(err.Error(), "secret") {
		t.Errorf("password in URL: %v", err)
	}
}

// A password file others can read is refused, with the chmod that fixes it.
func TestPasswordFileMode(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(f, []byte("secret\n"), 0o600)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		os.Chmod(f, mode)
		_, err := (PasswordSource{File: f}).Password(context.Background())
		var pe *PasswordFileModeError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), "chmod 600 "+f) {
			t.Errorf("mode %04o: want a refusal saying chmod 600, got %v", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		os.Chmod(f, mode)
		if pw, err := (PasswordSource{File: f}).Password(context.Background()); err != nil || pw != "secret" {
			t.Errorf("mode %04o: %q %v", mode, pw, err)
		}
	}
}

// quietTLSServer is a TLS server with a self-signed certificate that does
// not log the handshakes mailmove breaks off.
func quietTLSServer() *httptest.Server {
	s := httptest.NewUnstartedServer(http.NotFoundHandler())
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	return s
}
