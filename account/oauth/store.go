package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mailmove/mailmove/account"
	"golang.org/x/oauth2"
)

// Stored is what a token file holds: the refresh token, the last access
// token, and the client it was issued to (a refresh needs the same client).
type Stored struct {
	// Provider is "google" or "microsoft".
	Provider string `json:"provider"`
	// User is the account's user name.
	User string `json:"user"`
	// ClientID is the OAuth2 client the token was issued to.
	ClientID string `json:"client_id"`
	// ClientSecret is that client's secret, if it has one (Google's
	// desktop clients); the file is as private as the refresh token.
	ClientSecret string `json:"client_secret,omitempty"`
	// Token is the access and refresh token.
	Token *oauth2.Token `json:"token"`
}

// Dir is the directory of the token files: $XDG_CONFIG_HOME/mailmove/tokens,
// else ~/.config/mailmove/tokens.
func Dir() (string, error) {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no place for the token file: set XDG_CONFIG_HOME or HOME (%v)", err)
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "mailmove", "tokens"), nil
}

// Path is the token file of user at provider.
func Path(provider, user string) (string, error) {
	dir, err := Dir()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range user {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@.-_+", r)) {
			b.WriteRune(r)
		} else {
			for _, c := range []byte(string(r)) {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
	}
	return filepath.Join(dir, provider+"-"+b.String()+".json"), nil
}

// Save writes s to path atomically: a temporary file (0600) in the same
// directory (0700), synced, renamed over the old one, the directory
// synced. A crash leaves the old token or the new one, never half of one.
func Save(path string, s *Stored) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("saving the OAuth2 token: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("saving the OAuth2 token: %w", err)
	}
	f, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return fmt.Errorf("saving the OAuth2 token: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("saving the OAuth2 token to %s: %w", path, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("saving the OAuth2 token to %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Load reads a token file.
func Load(path string) (*Stored, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Stored
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("the token file %s is damaged (%v)", path, err)
	}
	if s.Token == nil || s.Token.RefreshToken == "" {
		return nil, fmt.Errorf("the token file %s holds no refresh token", path)
	}
	return &s, nil
}

// Source gives the access tokens of one account from its token file,
// refreshing them when they expire or the server refuses one, and saving
// rotated refresh tokens.
type Source struct {
	u      *account.URL
	p      *Provider
	path   string
	mu     sync.Mutex
	stored *Stored
}

// Open returns the token source of u (auth=google or auth=microsoft). No
// stored sign-in is a *NeedLoginError.
func Open(u *account.URL) (*Source, error) {
	p, err := ProviderFor(u.Auth)
	if err != nil {
		return nil, err
	}
	path, err := Path(p.Name, u.User)
	if err != nil {
		return nil, err
	}
	s, err := Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &NeedLoginError{Account: u.String(), Reason: "no OAuth2 sign-in is stored for this account (looked for " + path + ")",
			Command: LoginCommand(u, "", p.SecretRequired)}
	}
	if err != nil && !errors.Is(err, fs.ErrPermission) {
		return nil, &NeedLoginError{Account: u.String(), Reason: err.Error(), Command: LoginCommand(u, "", p.SecretRequired), Err: err}
	}
	if err != nil {
		return nil, err
	}
	return &Source{u: u, p: p, path: path, stored: s}, nil
}

// Path is the token file.
func (s *Source) Path() string { return s.path }

// AccessToken returns a valid access token, refreshing it if it expired
// or if fresh is set (the server refused the last one).
func (s *Source) AccessToken(ctx context.Context, fresh bool) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := s.stored.Token
	if !fresh && tok.Valid() {
		return tok.AccessToken, nil
	}
	// Another run (or login) may have refreshed meanwhile, and the
	// provider may have rotated the refresh token we hold: take the file's.
	if disk, err := Load(s.path); err == nil && disk.Token.RefreshToken != tok.RefreshToken {
		s.stored, tok = disk, disk.Token
		if !fresh && tok.Valid() {
			return tok.AccessToken, nil
		}
	}
	cfg := s.p.Config(s.stored.ClientID, s.stored.ClientSecret, "")
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Only the refresh token: the oauth2 package refreshes right away.
	nt, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		if isInvalidGrant(err) {
			return "", &NeedLoginError{Account: s.u.String(), Reason: "the OAuth2 sign-in has expired or was revoked (the authorisation server refused the refresh token: invalid_grant)",
				Command: LoginCommand(s.u, s.stored.ClientID, s.stored.ClientSecret != ""), Err: err}
		}
		return "", fmt.Errorf("refreshing the OAuth2 access token at %s: %w", s.p.Endpoint.TokenURL, err)
	}
	if nt.RefreshToken == "" {
		nt.RefreshToken = tok.RefreshToken
	}
	next := *s.stored
	next.Token = nt
	if err := Save(s.path, &next); err != nil {
		return "", err
	}
	s.stored = &next
	return nt.AccessToken, nil
}

// CommandSource gives the access tokens that a command prints
// (--from-oauth-token-cmd): for keyrings and helpers such as oama. The
// command runs with sh -c; the first line of its output is the token.
type CommandSource struct {
	// Command is run with sh -c.
	Command string
	// Flag is the flag it came from, for messages.
	Flag string

	mu  sync.Mutex
	tok string
}

// AccessToken runs the command, or gives its last token again unless
// fresh is set.
func (c *CommandSource) AccessToken(ctx context.Context, fresh bool) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != "" && !fresh {
		return c.tok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", c.Command)
	cmd.Stdin = os.Stdin
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("the token command of %s failed: %w", c.Flag, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("the token command of %s printed nothing; it must print an OAuth2 access token", c.Flag)
	}
	c.tok = line
	return line, nil
}
