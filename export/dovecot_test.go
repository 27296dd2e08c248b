package export

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

func TestDovecotInterop(t *testing.T) {
	d := testmail.StartDovecot(t)
	msgs := testmail.Corpus()
	testmail.Put(t, d.Config(t, "imaps", "src"), msgs)
	for _, tc := range []struct {
		scheme string
		format archive.Format
	}{{"imaps", archive.Mbox}, {"imap", archive.EML}} {
		t.Run(tc.scheme+"-"+string(tc.format), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cfg := d.Config(t, tc.scheme, "src")
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
	t.Run("refresh-flags-condstore", func(t *testing.T) {
		// With CONDSTORE a flags refresh opens only the folders whose
		// HIGHESTMODSEQ moved.
		cfg := d.Config(t, "imaps", "src")
		out := filepath.Join(t.TempDir(), "out")
		run := func() *Summary { return exportWith(t, out, archive.Mbox, Options{Account: cfg, RefreshFlags: true}) }
		if sum := run(); sum.Messages != len(msgs) {
			t.Fatalf("first run: %d messages", sum.Messages)
		}
		if sum := run(); sum.Examined != 0 || sum.FlagsUpdated != 0 {
			t.Fatalf("nothing changed, yet %d folders examined, %d flags updated", sum.Examined, sum.FlagsUpdated)
		}
		c, err := cfg.Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select("Sent", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		var one imap.UIDSet
		one.AddNum(1)
		if err := c.Store(one, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{"$Reviewed"}, Silent: true}, nil).Close(); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if sum := run(); sum.Examined != 1 || sum.FlagsUpdated != 1 {
			t.Fatalf("one flag changed in Sent: %d folders examined, %d flags updated", sum.Examined, sum.FlagsUpdated)
		}
	})
	t.Run("folder-sizes", func(t *testing.T) {
		// Dovecot 2.3 has no STATUS=SIZE: `mailmove folders` adds sizes up
		c, err := d.Config(t, "imaps", "src").Dial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var want int64
		var n uint32
		for _, m := range msgs {
			if m.Folder == "Sent" {
				want += int64(len(m.Raw))
				n++
			}
		}
		gotN, got, err := c.TotalSize("Sent")
		if err != nil || got != want || gotN != n {
			t.Fatalf("Sent: %d messages, %d bytes (%v); want %d, %d", gotN, got, err, n, want)
		}
	})
	t.Run("trust", func(t *testing.T) {
		// No CA file: the self-signed certificate is refused, and the error
		// shows its fingerprint.
		cfg := d.Config(t, "imaps", "src")
		cfg.CAFile = ""
		_, err := cfg.Dial(context.Background())
		pemBytes, _ := os.ReadFile(filepath.Join(d.Dir, "cert.pem"))
		blk, _ := pem.Decode(pemBytes)
		cert, _ := x509.ParseCertificate(blk.Bytes)
		fp := account.Fingerprint(cert.Raw)
		if err == nil || !strings.Contains(err.Error(), fp) {
			t.Fatalf("want a TLS error naming fingerprint %s, got %v", fp, err)
		}
		// The pinned fingerprint is accepted, over STARTTLS too.
		for _, scheme := range []string{"imaps", "imap"} {
			cfg = d.Config(t, scheme, "src")
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
