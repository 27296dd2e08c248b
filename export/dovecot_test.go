package export

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
)

// dovecot is a private Dovecot started for a test (testdata/dovecot).
type dovecot struct {
	dir               string
	imapAddr, tlsAddr string
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startDovecot starts Dovecot, or skips the test when it is not installed
// (CI sets MAILMOVE_REQUIRE_INTEROP=1, and then a missing Dovecot fails).
func startDovecot(t testing.TB) *dovecot {
	t.Helper()
	if _, err := exec.LookPath("dovecot"); err != nil {
		if os.Getenv("MAILMOVE_REQUIRE_INTEROP") != "" {
			t.Fatal("dovecot is not installed (apt-get install dovecot-imapd)")
		}
		t.Skip("dovecot is not installed; apt-get install dovecot-imapd to run this test")
	}
	dir, err := os.MkdirTemp("", "mailmove-dovecot-")
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := freePort(t), freePort(t)
	out, err := exec.Command("bash", "../testdata/dovecot/start.sh", dir, fmt.Sprint(p1), fmt.Sprint(p2)).CombinedOutput()
	if err != nil {
		t.Fatalf("starting dovecot: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "run", "master.pid")); err == nil {
			exec.Command("kill", strings.TrimSpace(string(b))).Run()
			time.Sleep(200 * time.Millisecond)
		}
		os.RemoveAll(dir)
	})
	return &dovecot{dir: dir, imapAddr: fmt.Sprintf("127.0.0.1:%d", p1), tlsAddr: fmt.Sprintf("127.0.0.1:%d", p2)}
}

func (d *dovecot) config(t testing.TB, scheme, user string) *account.Config {
	addr := d.tlsAddr
	if scheme == "imap" {
		addr = d.imapAddr
	}
	u, err := account.ParseURL(scheme + "://" + user + "@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("pw\n"), 0o600)
	return &account.Config{URL: u, CAFile: filepath.Join(d.dir, "cert.pem"), Password: account.PasswordSource{File: pw}}
}

func (d *dovecot) put(t testing.TB, cfg *account.Config, msgs []testMsg) {
	t.Helper()
	c, err := cfg.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	made := map[string]bool{"INBOX": true}
	for _, m := range msgs {
		segs := strings.Split(m.folder, "/")
		for i := range segs {
			p := strings.Join(segs[:i+1], "/")
			if !made[p] {
				c.Create(p, nil).Wait()
				made[p] = true
			}
		}
		ap := c.Append(m.folder, int64(len(m.raw)), &imap.AppendOptions{Flags: m.flags, Time: m.date})
		ap.Write(m.raw)
		ap.Close()
		if _, err := ap.Wait(); err != nil {
			t.Fatalf("APPEND to %s: %v", m.folder, err)
		}
	}
}

// dovecotCorpus has nested and non-ASCII folders, duplicates, a big
// attachment and every flag.
func dovecotCorpus() []testMsg {
	msgs := genMessages(150, []string{"INBOX", "Sent", "Trash", "Archiv/2024/Q1", "Entwürfe/Übersicht", "日本語", "R&D"}, 11)
	all := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft, "$Forwarded", "$Junk", "Custom_Keyword"}
	msgs[1].flags = all
	// duplicates: the same bytes twice in one folder and once elsewhere
	msgs = append(msgs, testMsg{folder: msgs[2].folder, raw: msgs[2].raw, flags: nil, date: msgs[2].date})
	msgs = append(msgs, testMsg{folder: "Sent", raw: msgs[3].raw, flags: msgs[3].flags, date: msgs[3].date})
	// a big attachment (6 MB of base64)
	var b strings.Builder
	b.WriteString("From: big@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJD", 19) + "\r\n"
	for b.Len() < 6<<20 {
		b.WriteString(line)
	}
	b.WriteString("--x--\r\n")
	msgs = append(msgs, testMsg{folder: "Archiv/2024/Q1", raw: []byte(b.String()), flags: []imap.Flag{imap.FlagSeen}, date: time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)})
	return msgs
}

func TestDovecotInterop(t *testing.T) {
	d := startDovecot(t)
	msgs := dovecotCorpus()
	d.put(t, d.config(t, "imaps", "src"), msgs)
	for _, tc := range []struct {
		scheme string
		format archive.Format
	}{{"imaps", archive.Mbox}, {"imap", archive.EML}} {
		t.Run(tc.scheme+"-"+string(tc.format), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cfg := d.config(t, tc.scheme, "src")
			sum := export(t, cfg, out, tc.format, 4)
			if sum.Messages != len(msgs) || len(sum.Failed) > 0 {
				t.Fatalf("summary: %d messages, failed %v; want %d", sum.Messages, sum.Failed, len(msgs))
			}
			checkExact(t, out, msgs)
			if sum := export(t, cfg, out, tc.format, 4); sum.Messages != 0 {
				t.Fatalf("re-run exported %d", sum.Messages)
			}
		})
	}
	t.Run("trust", func(t *testing.T) {
		// No CA file: the self-signed certificate is refused, and the error
		// shows its fingerprint.
		cfg := d.config(t, "imaps", "src")
		cfg.CAFile = ""
		_, err := cfg.Dial(context.Background())
		pemBytes, _ := os.ReadFile(filepath.Join(d.dir, "cert.pem"))
		blk, _ := pem.Decode(pemBytes)
		cert, _ := x509.ParseCertificate(blk.Bytes)
		fp := account.Fingerprint(cert.Raw)
		if err == nil || !strings.Contains(err.Error(), fp) {
			t.Fatalf("want a TLS error naming fingerprint %s, got %v", fp, err)
		}
		// The pinned fingerprint is accepted, over STARTTLS too.
		for _, scheme := range []string{"imaps", "imap"} {
			cfg = d.config(t, scheme, "src")
			cfg.CAFile = ""
			cfg.Fingerprint = fp
			c, err := cfg.Dial(context.Background())
			if err != nil {
				t.Fatalf("%s with pinned fingerprint: %v", scheme, err)
			}
			c.Close()
		}
		// A wrong pin is refused, naming the server's fingerprint.
		cfg.Fingerprint = strings.Repeat("AB", 32)
		if _, err := cfg.Dial(context.Background()); err == nil || !strings.Contains(err.Error(), fp) {
			t.Fatalf("wrong pin: %v", err)
		}
	})
}
