package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/account/oauth"
)

// cmdLogin signs an account in with OAuth2 once (a browser is needed once)
// and stores the refresh token for later, unattended runs.
func cmdLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseLogin(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runLogin(ctx, o, stdout, stderr)
}

// loginOptions are login's command line.
type loginOptions struct {
	url *account.URL
	// clientID and secretFile are the user's own OAuth2 app.
	clientID, secretFile string
	// check: sign in to the IMAP server after, with caFile and
	// fingerprint (and the IMAP conversation on stderr with debug).
	check       bool
	caFile      string
	fingerprint string
	debug       bool
}

// parseLogin reads login's command line and checks it.
func parseLogin(args []string, stdout, stderr io.Writer) (*loginOptions, error) {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &loginOptions{}
	fs.StringVar(&o.clientID, "oauth-client-id", "", "the client `ID` of your own OAuth2 app (see README: registering an app)")
	fs.StringVar(&o.secretFile, "oauth-client-secret-file", "", "read the client secret of that app from the first line of `file` (Google; chmod 600)")
	fs.BoolVar(&o.check, "check", true, "after signing in, sign in to the IMAP server with the new token and list its folders")
	fs.StringVar(&o.caFile, "ca-file", "", "for the check: trust the certificates in this PEM `file`")
	fs.StringVar(&o.fingerprint, "fingerprint", "", "for the check: pin the server certificate by its `SHA256` fingerprint")
	debug := debugFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mailmove login URL --oauth-client-id ID [--oauth-client-secret-file FILE]

Signs in to Gmail / Google Workspace (gmail://USER or ?auth=google: a URL to
open in a browser on this machine) or Microsoft 365 / Outlook.com
(outlook://USER or ?auth=microsoft: a code to enter on any device), and
stores the refresh token, mode 0600, under $XDG_CONFIG_HOME/mailmove/tokens/.
Later runs (export, migrate, import, folders) refresh the access token by
themselves.

`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(pos) != 1 {
		return nil, usagef("login", "want one account URL, e.g. mailmove login gmail://me@gmail.com --oauth-client-id ID --oauth-client-secret-file FILE")
	}
	u, err := account.ParseURL(pos[0])
	if err != nil {
		return nil, err
	}
	if !u.Auth.IsOAuth() {
		return nil, &account.UsageError{Msg: fmt.Sprintf("%s signs in with a password; mailmove login is for OAuth2 accounts (gmail://USER, outlook://USER, or ?auth=google / ?auth=microsoft)", u)}
	}
	o.url, o.debug = u, *debug
	return o, nil
}

// runLogin signs in, stores the token and, with --check, tries it on the
// IMAP server; a server that does not take it is errFailedShown.
func runLogin(ctx context.Context, o *loginOptions, stdout, stderr io.Writer) error {
	u := o.url
	secret := ""
	if o.secretFile != "" {
		var err error
		if secret, err = readSecretFile(o.secretFile); err != nil {
			return err
		}
	}
	path, err := oauth.Login(ctx, u, oauth.LoginOptions{ClientID: o.clientID, ClientSecret: secret, Out: stderr})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Signed in as %s. The refresh token is in %s (mode 0600); export, migrate and import with --from %s (or --to) use it from now on.\n", u.User, path, u)
	if !o.check {
		return nil
	}
	src, err := oauth.Open(u)
	if err != nil {
		return err
	}
	cfg := &account.Config{URL: u, Token: src, CAFile: o.caFile, Fingerprint: o.fingerprint, Version: version}
	if o.debug {
		cfg.Debug = stderr
	}
	c, err := cfg.Dial(ctx)
	if err == nil {
		var n int
		var folders []*account.Folder
		if folders, err = c.ListFolders(); err == nil {
			n = len(folders)
		}
		c.Close()
		if err == nil {
			word := "folders"
			if n == 1 {
				word = "folder"
			}
			fmt.Fprintf(stdout, "IMAP sign-in to %s works: %d %s.\n", u.Addr(), n, word)
			return nil
		}
	}
	fmt.Fprintf(stderr, "mailmove: the sign-in is stored, but the IMAP server did not take the token: %v\nFix that, then try with: mailmove folders --from %s\n", err, u)
	return errFailedShown
}

// readSecretFile reads a client secret file: its first line, refused if
// others can read it.
func readSecretFile(path string) (string, error) {
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
			return "", &account.UsageError{Msg: fmt.Sprintf("the client secret file %s is readable by others (mode %04o): run chmod 600 %s and try again", path, uint32(fi.Mode().Perm()), path)}
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the client secret file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", &account.UsageError{Msg: "the client secret file " + path + " is empty"}
	}
	return line, nil
}
