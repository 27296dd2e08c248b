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
func cmdLogin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	clientID := fs.String("oauth-client-id", "", "the client `ID` of your own OAuth2 app (see README: registering an app)")
	secretFile := fs.String("oauth-client-secret-file", "", "read the client secret of that app from the first line of `file` (Google; chmod 600)")
	check := fs.Bool("check", true, "after signing in, sign in to the IMAP server with the new token and list its folders")
	caFile := fs.String("ca-file", "", "for the check: trust the certificates in this PEM `file`")
	fingerprint := fs.String("fingerprint", "", "for the check: pin the server certificate by its `SHA256` fingerprint")
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
	pos, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "mailmove login: want one account URL, e.g. mailmove login gmail://me@gmail.com --oauth-client-id ID --oauth-client-secret-file FILE")
		return exitUsage
	}
	u, err := account.ParseURL(pos[0])
	if err != nil {
		return errorExit(stderr, err)
	}
	if !u.Auth.IsOAuth() {
		return errorExit(stderr, &account.UsageError{Msg: fmt.Sprintf("%s signs in with a password; mailmove login is for OAuth2 accounts (gmail://USER, outlook://USER, or ?auth=google / ?auth=microsoft)", u)})
	}
	secret := ""
	if *secretFile != "" {
		if secret, err = readSecretFile(*secretFile); err != nil {
			return errorExit(stderr, err)
		}
	}
	path, err := oauth.Login(ctx, u, oauth.LoginOptions{ClientID: *clientID, ClientSecret: secret, Out: stderr})
	if err != nil {
		return errorExit(stderr, err)
	}
	fmt.Fprintf(stdout, "Signed in as %s. The refresh token is in %s (mode 0600); export, migrate and import with --from %s (or --to) use it from now on.\n", u.User, path, u)
	if !*check {
		return exitOK
	}
	src, err := oauth.Open(u)
	if err != nil {
		return errorExit(stderr, err)
	}
	cfg := &account.Config{URL: u, Token: src, CAFile: *caFile, Fingerprint: *fingerprint, Version: version}
	if *debug {
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
			return exitOK
		}
	}
	fmt.Fprintf(stderr, "mailmove: the sign-in is stored, but the IMAP server did not take the token: %v\nFix that, then try with: mailmove folders --from %s\n", err, u)
	return exitFailed
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
