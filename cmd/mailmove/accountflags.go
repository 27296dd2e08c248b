package main

import (
	"context"
	"flag"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mailmove/mailmove"
	"github.com/mailmove/mailmove/account"
)

// accountFlags are the flags that describe one account, prefixed "from" or "to".
type accountFlags struct {
	prefix       string
	url          *string
	caFile       *string
	fingerprint  *string
	passwordFile *string
	passwordCmd  *string
	timeout      *time.Duration
	// debug is the command's --debug-imap flag (one for both accounts).
	debug *bool
}

func addAccountFlags(fs *flag.FlagSet, prefix string) *accountFlags {
	env := "MAILMOVE_" + strings.ToUpper(prefix) + "_PASSWORD"
	return &accountFlags{
		prefix:       prefix,
		url:          fs.String(prefix, "", "account `URL` (imaps://USER@HOST, imap://USER@HOST, bridge://USER, demo)"),
		caFile:       fs.String(prefix+"-ca-file", "", "trust the certificates in this PEM `file` (Bridge: the cert.pem of `cert export`)"),
		fingerprint:  fs.String(prefix+"-fingerprint", "", "pin the server certificate by its `SHA256` fingerprint"),
		passwordFile: fs.String(prefix+"-password-file", "", "read the password from the first line of `file` (refused unless only you can read it: chmod 600)"),
		passwordCmd:  fs.String(prefix+"-password-cmd", "", "run `command` (sh -c) and use the first line it prints as password (else $"+env+", else a prompt)"),
		timeout:      fs.Duration(prefix+"-timeout", 60*time.Second, "give up on a connection on which nothing moved for this `long`"),
		debug:        debugFlag(fs),
	}
}

// config builds the account configuration; for demo it starts the demo
// server and returns a function that stops it.
func (af *accountFlags) config(ctx context.Context, stderr io.Writer) (*account.Config, func(), error) {
	if *af.url == "" {
		return nil, nil, &account.UsageError{Msg: "--" + af.prefix + " is required: the account URL, e.g. imaps://me@example.org@imap.example.org, bridge://me@proton.me or demo"}
	}
	u, err := account.ParseURLFlag(*af.url, af.prefix)
	if err != nil {
		return nil, nil, err
	}
	stop := func() {}
	if u.Scheme == "demo" {
		srv, du, err := account.StartDemo(ctx, mailmove.DemoCorpus())
		if err != nil {
			return nil, nil, err
		}
		u, stop = du, func() { srv.Close() }
	}
	cfg := &account.Config{
		URL:         u,
		CAFile:      *af.caFile,
		Fingerprint: *af.fingerprint,
		IdleTimeout: *af.timeout,
		Version:     version,
		FlagPrefix:  af.prefix,
		Password: account.PasswordSource{
			File:    *af.passwordFile,
			Command: *af.passwordCmd,
			Env:     "MAILMOVE_" + strings.ToUpper(af.prefix) + "_PASSWORD",
		},
	}
	if *af.debug {
		cfg.Debug = stderr
	}
	return cfg, stop, nil
}

// debugFlag returns the FlagSet's --debug-imap flag, defining it once.
func debugFlag(fs *flag.FlagSet) *bool {
	if f := fs.Lookup("debug-imap"); f != nil {
		return f.Value.(*debugValue).b
	}
	v := &debugValue{b: new(bool)}
	fs.Var(v, "debug-imap", "log the IMAP conversation to stderr, credentials redacted")
	return v.b
}

type debugValue struct{ b *bool }

func (d *debugValue) String() string {
	if d == nil || d.b == nil {
		return "false"
	}
	return strconv.FormatBool(*d.b)
}
func (d *debugValue) Set(s string) error {
	v, err := strconv.ParseBool(s)
	*d.b = v
	return err
}
func (d *debugValue) IsBoolFlag() bool { return true }
