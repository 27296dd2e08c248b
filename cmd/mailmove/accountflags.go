package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/mailmove/mailmove"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/account/oauth"
)

// accountFlags are the flags that describe one account, prefixed "from" or "to".
type accountFlags struct {
	prefix       string
	url          *string
	caFile       *string
	fingerprint  *string
	passwordFile *string
	passwordCmd  *string
	tokenCmd     *string
	timeout      *time.Duration
	// debug is the command's --debug-imap flag (one for both accounts).
	debug *bool
}

func addAccountFlags(fs *flag.FlagSet, prefix string) *accountFlags {
	env := "MAILMOVE_" + strings.ToUpper(prefix) + "_PASSWORD"
	return &accountFlags{
		prefix:       prefix,
		url:          fs.String(prefix, "", "account `URL` (imaps://USER@HOST, imap://USER@HOST, bridge://USER, gmail://USER, outlook://USER, demo; ?auth=google|microsoft|password)"),
		caFile:       fs.String(prefix+"-ca-file", "", "trust the certificates in this PEM `file` (Bridge: the cert.pem of `cert export`)"),
		fingerprint:  fs.String(prefix+"-fingerprint", "", "pin the server certificate by its `SHA256` fingerprint"),
		passwordFile: fs.String(prefix+"-password-file", "", "read the password from the first line of `file` (refused unless only you can read it: chmod 600)"),
		passwordCmd:  fs.String(prefix+"-password-cmd", "", "run `command` (sh -c) and use the first line it prints as password (else $"+env+", else a prompt)"),
		tokenCmd:     fs.String(prefix+"-oauth-token-cmd", "", "run `command` (sh -c) and use the first line it prints as OAuth2 access token (instead of the token stored by mailmove login)"),
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
	if err := af.tokenSource(cfg); err != nil {
		stop()
		return nil, nil, err
	}
	if *af.debug {
		cfg.Debug = stderr
	}
	return cfg, stop, nil
}

// tokenSource sets the OAuth2 token source of an account that signs in
// with OAuth2: the token command, else the token stored by mailmove login
// (none stored is a *oauth.NeedLoginError naming the login to run).
func (af *accountFlags) tokenSource(cfg *account.Config) error {
	u := cfg.URL
	flag := "--" + af.prefix + "-oauth-token-cmd"
	if !u.Auth.IsOAuth() {
		if *af.tokenCmd != "" {
			return &account.UsageError{Msg: flag + " needs an account that signs in with OAuth2: add ?auth=google, ?auth=microsoft or ?auth=oauth to --" + af.prefix + ", or use gmail:// or outlook://"}
		}
		return nil
	}
	if *af.passwordFile != "" || *af.passwordCmd != "" {
		return &account.UsageError{Msg: fmt.Sprintf("--%s signs in with OAuth2 (auth=%s), so it takes no password: drop --%s-password-file/--%s-password-cmd, or add ?auth=password for an app password", af.prefix, u.Auth, af.prefix, af.prefix)}
	}
	if *af.tokenCmd != "" {
		cfg.Token = &oauth.CommandSource{Command: *af.tokenCmd, Flag: flag}
		return nil
	}
	if u.Auth == account.AuthOAuth {
		return &account.UsageError{Msg: "--" + af.prefix + " has auth=oauth: give the access token with " + flag + " (mailmove login knows only auth=google and auth=microsoft)"}
	}
	src, err := oauth.Open(u)
	if err != nil {
		return err
	}
	cfg.Token = src
	return nil
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
