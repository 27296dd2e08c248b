// Command bridgestub stands in for Proton Mail Bridge in mailmove's tests. It
// serves one account through github.com/ProtonMail/gluon, the IMAP engine
// Bridge runs, with STARTTLS and a self-signed certificate for 127.0.0.1 (as
// Bridge makes), and Bridge's mailbox tree: INBOX, Drafts, Sent, Starred,
// Archive, Spam, Trash, All Mail, Folders/..., Labels/..., with one Proton
// message shown in its folder, in each of its labels, in Starred and in All
// Mail, some messages in two folders (Sent and INBOX, Work and Archive), and
// one message that is only in All Mail.
//
// It lives in its own module so that mailmove does not depend on gluon.
//
// Usage:
//
//	bridgestub -dir DIR [-listen 127.0.0.1:0] [-user me@proton.test] [-password PW] [-messages N]
//
// It writes DIR/cert.pem, DIR/expected.json (what an export must find) and,
// once it accepts connections, DIR/addr (host:port). It serves until killed.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ProtonMail/gluon"
	"github.com/ProtonMail/gluon/connector"
	"github.com/ProtonMail/gluon/imap"
	"github.com/sirupsen/logrus"
)

// Expected is one Proton message and where an export must put it.
type Expected struct {
	PMID    string   `json:"pm_id"`
	Folder  string   `json:"folder"` // export folder path ("All Mail" for the orphan)
	Also    []string `json:"also,omitempty"`
	Labels  []string `json:"labels"`
	Starred bool     `json:"starred"`
	// Undecryptable: Bridge serves it with its "could not be decrypted" placeholder.
	Undecryptable bool `json:"undecryptable,omitempty"`
}

func main() {
	dir := flag.String("dir", "", "state folder (required)")
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	user := flag.String("user", "me@proton.test", "user name")
	password := flag.String("password", "bridgepass1234567890ab", "Bridge password")
	n := flag.Int("messages", 40, "number of messages")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	logrus.SetOutput(io.Discard)
	if err := run(*dir, *listen, *user, *password, *n); err != nil {
		log.Fatal(err)
	}
}

func run(dir, listen, user, password string, n int) error {
	ctx := context.Background()
	cert, err := selfSigned(dir)
	if err != nil {
		return err
	}
	server, err := gluon.New(
		gluon.WithTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		gluon.WithDataDir(filepath.Join(dir, "data")),
		gluon.WithDatabaseDir(filepath.Join(dir, "db")),
		gluon.WithVersionInfo(3, 21, 0, "Proton Mail Bridge", "Proton AG", "https://proton.me/support/mail"),
		gluon.WithLogger(io.Discard, io.Discard),
	)
	if err != nil {
		return err
	}
	defer server.Close(ctx)

	flags := imap.NewFlagSet(imap.FlagSeen, imap.FlagFlagged, imap.FlagDeleted, imap.FlagAnswered, imap.FlagDraft)
	conn := connector.NewDummy([]string{user}, []byte(password), 50*time.Millisecond, flags, flags, imap.NewFlagSet())
	if _, err := server.AddUser(ctx, conn, []byte(password)); err != nil {
		return err
	}
	// Announce INBOX, which the dummy connector made itself.
	if err := conn.Sync(ctx); err != nil {
		return err
	}
	// System mailboxes first: once both prefixes are set, names outside them are refused.
	system := []struct {
		id, name, attr string
	}{
		{"8", "Drafts", imap.AttrDrafts},
		{"7", "Sent", imap.AttrSent},
		{"10", "Starred", imap.AttrFlagged},
		{"6", "Archive", imap.AttrArchive},
		{"4", "Spam", imap.AttrJunk},
		{"3", "Trash", imap.AttrTrash},
		{"5", "All Mail", imap.AttrAll},
	}
	for _, s := range system {
		if err := conn.MailboxCreated(imap.Mailbox{ID: imap.MailboxID(s.id), Name: []string{s.name}, Flags: flags, PermanentFlags: flags,
			Attributes: imap.NewFlagSet(imap.AttrNoInferiors, s.attr)}); err != nil {
			return err
		}
	}
	conn.SetFolderPrefix("Folders")
	conn.SetLabelsPrefix("Labels")
	custom := []struct {
		id   string
		name []string
	}{
		{"f1", []string{"Folders", "Work"}},
		{"f2", []string{"Folders", "Work", "2024"}},
		{"f3", []string{"Folders", "Reisen & Urlaub"}},
		{"l1", []string{"Labels", "Important"}},
		{"l2", []string{"Labels", "Travel"}},
	}
	for _, c := range custom {
		if err := conn.MailboxCreated(imap.Mailbox{ID: imap.MailboxID(c.id), Name: c.name, Flags: flags, PermanentFlags: flags, Attributes: imap.NewFlagSet()}); err != nil {
			return err
		}
	}
	folders := []struct {
		id   imap.MailboxID
		path string
	}{{"0", "INBOX"}, {"7", "Sent"}, {"6", "Archive"}, {"3", "Trash"}, {"f1", "Work"}, {"f2", "Work/2024"}, {"f3", "Reisen & Urlaub"}, {"4", "Spam"}}
	var expected []Expected
	for i := 0; i < n; i++ {
		pmid := fmt.Sprintf("pm-%04d-%s", i, strings.Repeat("x", 20))
		f := folders[i%len(folders)]
		mboxes := []imap.MailboxID{f.id, "5"}
		e := Expected{PMID: pmid, Folder: f.path, Labels: []string{}}
		if i%3 == 0 {
			mboxes = append(mboxes, "l1")
			e.Labels = append(e.Labels, "Important")
		}
		if i%4 == 0 {
			mboxes = append(mboxes, "l2")
			e.Labels = append(e.Labels, "Travel")
		}
		msgFlags := imap.NewFlagSet()
		if i%2 == 0 {
			msgFlags = msgFlags.Add(imap.FlagSeen)
		}
		if i%5 == 0 {
			mboxes = append(mboxes, "10")
			msgFlags = msgFlags.Add(imap.FlagFlagged)
			e.Starred = true
			e.Labels = append(e.Labels, "Starred")
		}
		if f.path == "Sent" && i%16 == 1 {
			// a message to yourself: in Sent and in INBOX
			mboxes = append(mboxes, "0")
			e.Also = []string{"INBOX"}
		}
		if f.path == "Work" && i%16 == 4 {
			// a message in a folder and in Archive
			mboxes = append(mboxes, "6")
			e.Also = []string{"Archive"}
		}
		e.Undecryptable = i == 3
		expected = append(expected, e)
		if err := conn.MessageCreated(imap.Message{ID: imap.MessageID(pmid), Flags: msgFlags, Date: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)},
			literal(pmid, i), mboxes); err != nil {
			return err
		}
	}
	if n > 0 {
		// the orphan: only in All Mail
		orphan := "pm-orphan-" + strings.Repeat("y", 20)
		if err := conn.MessageCreated(imap.Message{ID: imap.MessageID(orphan), Flags: imap.NewFlagSet(imap.FlagSeen), Date: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)},
			literal(orphan, 9999), []imap.MailboxID{"5"}); err != nil {
			return err
		}
		expected = append(expected, Expected{PMID: orphan, Folder: "All Mail", Labels: []string{}})
	}
	conn.Flush()
	b, _ := json.MarshalIndent(expected, "", " ")
	if err := os.WriteFile(filepath.Join(dir, "expected.json"), b, 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	if err := server.Serve(ctx, ln); err != nil {
		return err
	}
	// Let the simulated updates reach the server before announcing the address.
	time.Sleep(time.Second)
	if err := os.WriteFile(filepath.Join(dir, "addr"), []byte(ln.Addr().String()), 0o600); err != nil {
		return err
	}
	// SIGUSR1: renumber every mailbox (new UIDVALIDITY), as Bridge does on
	// repair, re-login and some upgrades.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		for range sig {
			conn.UIDValidityBumped()
			conn.Flush()
			time.Sleep(500 * time.Millisecond)
			os.WriteFile(filepath.Join(dir, "bumped"), []byte("1"), 0o600)
		}
	}()
	for err := range server.GetErrorCh() {
		log.Printf("gluon: %v", err)
	}
	return nil
}

func literal(pmid string, i int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "X-Pm-Internal-Id: %s\r\nFrom: Sender %d <s%d@example.org>\r\nTo: me@proton.test\r\nSubject: Proton message %d\r\nDate: Wed, 01 Jan 2025 00:00:00 +0000\r\nMessage-Id: <%s@protonmail.internalid>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", pmid, i, i, i, pmid)
	fmt.Fprintf(&b, "Hello %d.\r\nFrom here on, a line that looks like an mbox separator.\r\n", i)
	if i == 3 {
		// what Bridge serves for a message it could not decrypt
		b.WriteString("-----BEGIN PGP MESSAGE-----\r\nComment: This message could not be decrypted: gopenpgp: unable to decrypt message\r\n\r\nwcBMA0fcZ7XLgmf2AQf/cHhZ\r\n-----END PGP MESSAGE-----\r\n")
	}
	for l := 0; l < i%50; l++ {
		fmt.Fprintf(&b, "line %d of message %d\r\n", l, i)
	}
	return []byte(b.String())
}

// selfSigned makes a certificate like Bridge's (CN and IP SAN 127.0.0.1) and
// writes it to dir/cert.pem.
func selfSigned(dir string) (tls.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{Country: []string{"CH"}, Organization: []string{"Proton AG"}, OrganizationalUnit: []string{"Proton Mail"}, CommonName: "127.0.0.1"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pemCert, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
