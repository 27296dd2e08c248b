// Package config reads mailmove's configuration file (TOML): the accounts
// and the backup jobs that `mailmove backup` runs. The file is documented
// in the README ("Backups: the configuration file").
//
// Every mistake, whether TOML syntax, an unknown key, a value of the wrong
// type, a job naming an account that does not exist, a missing out, a bad
// format or a password in a URL, is an *Error naming the file and the line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mailmove/mailmove/account"
)

// Account is one [accounts.NAME] table: the same settings as the account
// flags of the command line (--from, --from-ca-file, ...).
type Account struct {
	// Name is the table's name.
	Name string
	// URL is the account URL (imaps://USER@HOST, bridge://USER, ...).
	URL string
	// CAFile, Fingerprint, PasswordFile and PasswordCmd are as
	// --from-ca-file, --from-fingerprint, --from-password-file and
	// --from-password-cmd; paths have "~" expanded.
	CAFile, Fingerprint, PasswordFile, PasswordCmd string
	// PasswordEnv names an environment variable that holds the password.
	PasswordEnv string
	// Timeout is as --from-timeout (0: the default, 60 s).
	Timeout time.Duration
	// Line is where the table starts in the file.
	Line int
}

// Job is one [jobs.NAME] table: an export of an account into an archive.
type Job struct {
	// Name is the table's name, the name `mailmove backup NAME` runs.
	Name string
	// Account names the [accounts.NAME] table to export.
	Account string
	// Format is "mbox" or "eml".
	Format string
	// Out is the archive folder, absolute, "~" expanded.
	Out string
	// Folders and Exclude are as export's --folder and --exclude.
	Folders, Exclude []string
	// EncryptTo are age recipients ("age1...", or an SSH public key); the
	// archive is encrypted to them.
	EncryptTo []string
	// Compress is "" or "zstd".
	Compress string
	// OnFailure is a command run with sh -c when the job fails.
	OnFailure string
	// Mirror moves archived messages that were deleted on the server into
	// the archive's deleted area (backup --mirror does it for every job).
	Mirror bool
	// Connections is as export's --connections (0: the default).
	Connections int
	// BridgeLabels is as export's --bridge-labels ("" = metadata).
	BridgeLabels string
	// RefreshFlags is as export's --refresh-flags.
	RefreshFlags bool
	// MboxLineEndings is "lf" (the default) or "crlf".
	MboxLineEndings string
	// MboxLayout is "", "mailmove" or "thunderbird".
	MboxLayout string
	// MboxStatusHeaders is as export's --mbox-status-headers.
	MboxStatusHeaders bool
	// Line is where the table starts in the file.
	Line int
}

// Config is a configuration file.
type Config struct {
	// Path is the file it was read from.
	Path string
	// Accounts by name.
	Accounts map[string]*Account
	// Jobs by name.
	Jobs map[string]*Job
	// Order is the job names in the order of the file.
	Order []string
}

// Error is a mistake in the configuration file.
type Error struct {
	// File is the configuration file.
	File string
	// Line is the line of the mistake (0 when it is not tied to one).
	Line int
	// Msg says what is wrong and what to do.
	Msg string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// ModeError is a configuration file that users other than its owner may
// write: it names commands mailmove runs (password_cmd, on_failure), so
// whoever can change it runs commands as you, and can read your mail.
type ModeError struct {
	// Path is the file.
	Path string
	// Mode is its permission bits.
	Mode fs.FileMode
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("%s can be changed by other users (mode %04o) and names commands mailmove runs as you: run chmod go-w %s and try again",
		e.Path, uint32(e.Mode.Perm()), e.Path)
}

// DefaultPath is $XDG_CONFIG_HOME/mailmove/config.toml, else
// ~/.config/mailmove/config.toml.
func DefaultPath() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "mailmove", "config.toml"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no configuration file: $XDG_CONFIG_HOME and $HOME are both unset; pass --config FILE")
	}
	return filepath.Join(home, ".config", "mailmove", "config.toml"), nil
}

// Load reads and validates the configuration file at p.
func Load(p string) (*Config, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{File: p, Msg: "no such file: write one (see the README, \"Backups\"), or pass --config FILE"}
		}
		return nil, err
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o022 != 0 {
		return nil, &ModeError{Path: p, Mode: fi.Mode()}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	return Parse(p, b)
}

// Parse validates the configuration in b, read from the file named name.
func Parse(name string, b []byte) (*Config, error) {
	var raw map[string]any
	md, err := toml.Decode(string(b), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if st := pe.Position.Start; st > 0 && st <= len(b) {
				// the line the mistake is on, not the next one when the
				// parser stopped at the newline that ends it
				line = 1 + bytes.Count(b[:st], []byte("\n"))
			}
			return nil, &Error{File: name, Line: line, Msg: "TOML syntax: " + pe.Message}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	p := &parser{name: name, lines: keyLines(string(b)), md: md}
	return p.config(raw)
}

type parser struct {
	name  string
	lines map[string]int
	md    toml.MetaData
}

// errAt returns an *Error at the line of the key (dotted path), or of the
// nearest table above it that has a line.
func (p *parser) errAt(key []string, format string, a ...any) *Error {
	return &Error{File: p.name, Line: p.line(key), Msg: fmt.Sprintf(format, a...)}
}

func (p *parser) line(key []string) int {
	for k := key; len(k) > 0; k = k[:len(k)-1] {
		if l, ok := p.lines[strings.Join(k, "\x00")]; ok {
			return l
		}
	}
	return 0
}

func (p *parser) config(raw map[string]any) (*Config, error) {
	c := &Config{Path: p.name, Accounts: map[string]*Account{}, Jobs: map[string]*Job{}}
	for _, k := range sortedKeys(raw) {
		if k != "accounts" && k != "jobs" {
			return nil, p.errAt([]string{k}, "unknown key %q: the file holds [accounts.NAME] and [jobs.NAME] tables", k)
		}
	}
	accounts, err := p.tables(raw, "accounts")
	if err != nil {
		return nil, err
	}
	for _, name := range p.ordered("accounts", accounts) {
		a, err := p.account(name, accounts[name].(map[string]any))
		if err != nil {
			return nil, err
		}
		c.Accounts[name] = a
	}
	jobs, err := p.tables(raw, "jobs")
	if err != nil {
		return nil, err
	}
	outs := map[string]string{}
	for _, name := range p.ordered("jobs", jobs) {
		j, err := p.job(name, jobs[name].(map[string]any), c)
		if err != nil {
			return nil, err
		}
		if other, ok := outs[j.Out]; ok {
			return nil, p.errAt([]string{"jobs", name, "out"}, "job %s writes to %s, as job %s does: give each job its own archive folder", name, j.Out, other)
		}
		outs[j.Out] = name
		c.Jobs[name] = j
		c.Order = append(c.Order, name)
	}
	return c, nil
}

// tables returns raw[key] as a map of tables.
func (p *parser) tables(raw map[string]any, key string) (map[string]any, error) {
	v, ok := raw[key]
	if !ok {
		return map[string]any{}, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, p.errAt([]string{key}, "%s must be tables, [%s.NAME], not a %s", key, key, p.md.Type(key))
	}
	for name, t := range m {
		if _, ok := t.(map[string]any); !ok {
			return nil, p.errAt([]string{key, name}, "%s.%s must be a table, [%s.%s], not a %s", key, name, key, name, p.md.Type(key, name))
		}
	}
	return m, nil
}

// ordered returns the names of the tables in the order of the file.
func (p *parser) ordered(key string, m map[string]any) []string {
	names := sortedKeys(m)
	sort.SliceStable(names, func(i, k int) bool {
		return p.line([]string{key, names[i]}) < p.line([]string{key, names[k]})
	})
	return names
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fields reads the keys of one table into typed values, refusing unknown
// keys and wrong types.
type fields struct {
	p     *parser
	path  []string
	t     map[string]any
	known map[string]bool
}

func (p *parser) fields(path []string, t map[string]any) *fields {
	return &fields{p: p, path: path, t: t, known: map[string]bool{}}
}

func (f *fields) key(k string) []string { return append(slices.Clone(f.path), k) }

func (f *fields) str(k string) (string, error) {
	f.known[k] = true
	v, ok := f.t[k]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", f.p.errAt(f.key(k), "%s must be a string (in quotes), not a %s", k, f.p.md.Type(f.key(k)...))
	}
	return s, nil
}

func (f *fields) boolean(k string) (bool, error) {
	f.known[k] = true
	v, ok := f.t[k]
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, f.p.errAt(f.key(k), "%s must be true or false, not a %s", k, f.p.md.Type(f.key(k)...))
	}
	return b, nil
}

func (f *fields) integer(k string) (int, error) {
	f.known[k] = true
	v, ok := f.t[k]
	if !ok {
		return 0, nil
	}
	n, ok := v.(int64)
	if !ok {
		return 0, f.p.errAt(f.key(k), "%s must be a whole number, not a %s", k, f.p.md.Type(f.key(k)...))
	}
	return int(n), nil
}

func (f *fields) list(k string) ([]string, error) {
	f.known[k] = true
	v, ok := f.t[k]
	if !ok {
		return nil, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, f.p.errAt(f.key(k), "%s must be a list of strings, [\"...\", \"...\"], not a %s", k, f.p.md.Type(f.key(k)...))
	}
	var out []string
	for _, x := range a {
		s, ok := x.(string)
		if !ok {
			return nil, f.p.errAt(f.key(k), "%s must be a list of strings, [\"...\", \"...\"]: %v is not a string", k, x)
		}
		out = append(out, s)
	}
	return out, nil
}

// unknown refuses a key no getter asked for.
func (f *fields) unknown(hint string) error {
	for _, k := range sortedKeys(f.t) {
		if !f.known[k] {
			return f.p.errAt(f.key(k), "unknown key %q in [%s]; known keys: %s", k, strings.Join(f.path, "."), hint)
		}
	}
	return nil
}

func (p *parser) account(name string, t map[string]any) (*Account, error) {
	f := p.fields([]string{"accounts", name}, t)
	a := &Account{Name: name, Line: p.line(f.path)}
	if _, ok := t["password"]; ok {
		return nil, p.errAt(f.key("password"), "a password never goes in the configuration file: use password_file (a file only you can read), password_cmd (e.g. \"pass show mail\") or password_env")
	}
	var err error
	get := func(k string, dst *string) {
		if err == nil {
			*dst, err = f.str(k)
		}
	}
	var timeout string
	get("url", &a.URL)
	get("ca_file", &a.CAFile)
	get("fingerprint", &a.Fingerprint)
	get("password_file", &a.PasswordFile)
	get("password_cmd", &a.PasswordCmd)
	get("password_env", &a.PasswordEnv)
	get("timeout", &timeout)
	if err != nil {
		return nil, err
	}
	if err := f.unknown("url, ca_file, fingerprint, password_file, password_cmd, password_env, timeout"); err != nil {
		return nil, err
	}
	if a.URL == "" {
		return nil, p.errAt(f.path, "account %s has no url: add url = \"imaps://USER@HOST\" (or bridge://USER)", name)
	}
	if hasPassword(a.URL) {
		return nil, p.errAt(f.key("url"), "the url of account %s holds a password: remove it and use password_file, password_cmd or password_env", name)
	}
	if a.URL == "demo" || strings.HasPrefix(a.URL, "demo:") {
		return nil, p.errAt(f.key("url"), "the demo account cannot be backed up: give a real account URL")
	}
	if _, err := account.ParseURL(a.URL); err != nil {
		return nil, p.errAt(f.key("url"), "%v", err)
	}
	n := 0
	for _, s := range []string{a.PasswordFile, a.PasswordCmd, a.PasswordEnv} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return nil, p.errAt(f.path, "account %s: give one of password_file, password_cmd and password_env, not several", name)
	}
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil || d <= 0 {
			return nil, p.errAt(f.key("timeout"), "timeout %q: want a duration such as \"60s\" or \"5m\"", timeout)
		}
		a.Timeout = d
	}
	for _, s := range []*string{&a.CAFile, &a.PasswordFile} {
		if *s, err = expand(*s); err != nil {
			return nil, p.errAt(f.path, "%v", err)
		}
	}
	return a, nil
}

// hasPassword reports whether an account URL has USER:PASSWORD@.
func hasPassword(u string) bool {
	_, rest, ok := strings.Cut(u, "://")
	if !ok {
		return false
	}
	rest, _, _ = strings.Cut(rest, "?")
	at := strings.LastIndexByte(rest, '@')
	return at >= 0 && strings.Contains(rest[:at], ":")
}

func (p *parser) job(name string, t map[string]any, c *Config) (*Job, error) {
	f := p.fields([]string{"jobs", name}, t)
	j := &Job{Name: name, Line: p.line(f.path)}
	var err error
	str := func(k string, dst *string) {
		if err == nil {
			*dst, err = f.str(k)
		}
	}
	list := func(k string, dst *[]string) {
		if err == nil {
			*dst, err = f.list(k)
		}
	}
	boolean := func(k string, dst *bool) {
		if err == nil {
			*dst, err = f.boolean(k)
		}
	}
	str("account", &j.Account)
	str("format", &j.Format)
	str("out", &j.Out)
	list("folders", &j.Folders)
	list("exclude", &j.Exclude)
	list("encrypt_to", &j.EncryptTo)
	str("compress", &j.Compress)
	str("on_failure", &j.OnFailure)
	boolean("mirror", &j.Mirror)
	str("bridge_labels", &j.BridgeLabels)
	boolean("refresh_flags", &j.RefreshFlags)
	str("mbox_line_endings", &j.MboxLineEndings)
	str("mbox_layout", &j.MboxLayout)
	boolean("mbox_status_headers", &j.MboxStatusHeaders)
	if err == nil {
		j.Connections, err = f.integer("connections")
	}
	if err != nil {
		return nil, err
	}
	if err := f.unknown("account, format, out, folders, exclude, encrypt_to, compress, on_failure, mirror, connections, bridge_labels, refresh_flags, mbox_line_endings, mbox_layout, mbox_status_headers"); err != nil {
		return nil, err
	}
	switch {
	case j.Account == "":
		return nil, p.errAt(f.path, "job %s has no account: add account = \"NAME\" naming an [accounts.NAME] table", name)
	case c.Accounts[j.Account] == nil:
		return nil, p.errAt(f.key("account"), "job %s names account %q, which the file does not define: add [accounts.%s] or fix the name (accounts: %s)", name, j.Account, j.Account, strings.Join(slices.Sorted(mapsKeys(c.Accounts)), ", "))
	}
	switch j.Format {
	case "mbox", "eml":
	case "":
		return nil, p.errAt(f.path, "job %s has no format: add format = \"mbox\" or \"eml\"", name)
	default:
		return nil, p.errAt(f.key("format"), "format %q: want \"mbox\" or \"eml\"", j.Format)
	}
	if j.Out == "" {
		return nil, p.errAt(f.path, "job %s has no out: add out = \"~/Backups/mail/%s\", the archive folder", name, name)
	}
	if j.Out, err = expand(j.Out); err != nil {
		return nil, p.errAt(f.key("out"), "%v", err)
	}
	if !filepath.IsAbs(j.Out) {
		return nil, p.errAt(f.key("out"), "out %q must be an absolute path or start with ~/ (cron and systemd run mailmove in another folder)", j.Out)
	}
	j.Out = filepath.Clean(j.Out)
	for _, k := range []string{"folders", "exclude"} {
		pats := j.Folders
		if k == "exclude" {
			pats = j.Exclude
		}
		for _, pat := range pats {
			if _, err := path.Match(pat, ""); err != nil {
				return nil, p.errAt(f.key(k), "bad pattern %q in %s: %v", pat, k, err)
			}
		}
	}
	for _, r := range j.EncryptTo {
		if !strings.HasPrefix(r, "age1") && !strings.HasPrefix(r, "ssh-ed25519 ") && !strings.HasPrefix(r, "ssh-rsa ") {
			return nil, p.errAt(f.key("encrypt_to"), "encrypt_to: %q is not an age recipient: want \"age1...\" (age-keygen -y KEYFILE prints it) or an SSH public key (\"ssh-ed25519 ...\", \"ssh-rsa ...\")", short(r))
		}
	}
	if j.Compress != "" && j.Compress != "zstd" {
		return nil, p.errAt(f.key("compress"), "compress %q: want \"zstd\", or leave compress out", j.Compress)
	}
	if j.BridgeLabels != "" && j.BridgeLabels != "metadata" && j.BridgeLabels != "folders" {
		return nil, p.errAt(f.key("bridge_labels"), "bridge_labels %q: want \"metadata\" or \"folders\"", j.BridgeLabels)
	}
	if j.MboxLineEndings == "" {
		j.MboxLineEndings = "lf"
	}
	if j.MboxLineEndings != "lf" && j.MboxLineEndings != "crlf" {
		return nil, p.errAt(f.key("mbox_line_endings"), "mbox_line_endings %q: want \"lf\" or \"crlf\"", j.MboxLineEndings)
	}
	switch j.MboxLayout {
	case "", "mailmove":
	case "thunderbird":
		if j.Format != "mbox" {
			return nil, p.errAt(f.key("mbox_layout"), "mbox_layout is for format = \"mbox\"")
		}
	default:
		return nil, p.errAt(f.key("mbox_layout"), "mbox_layout %q: want \"mailmove\" or \"thunderbird\"", j.MboxLayout)
	}
	if j.MboxStatusHeaders && j.Format != "mbox" {
		return nil, p.errAt(f.key("mbox_status_headers"), "mbox_status_headers is for format = \"mbox\"")
	}
	if j.Connections < 0 {
		return nil, p.errAt(f.key("connections"), "connections must be at least 1 (or left out: 4)")
	}
	return j, nil
}

func mapsKeys(m map[string]*Account) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func short(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}

// expand replaces a leading "~" or "~/" with the home folder.
func expand(s string) (string, error) {
	if s != "~" && !strings.HasPrefix(s, "~/") {
		return s, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%s: cannot expand ~: %v", s, err)
	}
	return filepath.Join(home, s[1:]), nil
}

// keyLines finds the line of every table header and key in a TOML file,
// keyed by the dotted path with "\x00" between segments. It reads the
// usual layout (one [table] header or key = value per line); values that
// span lines are skipped over as well as the simple scanner can.
func keyLines(src string) map[string]int {
	out := map[string]int{}
	var table []string
	depth := 0 // open brackets of a multi-line array
	inMulti := ""
	for i, line := range strings.Split(src, "\n") {
		n := i + 1
		l := strings.TrimSpace(line)
		if inMulti != "" {
			if strings.Contains(l, inMulti) {
				inMulti = ""
			}
			continue
		}
		if depth > 0 {
			depth += strings.Count(l, "[") - strings.Count(l, "]")
			continue
		}
		if l == "" || l[0] == '#' {
			continue
		}
		if strings.HasPrefix(l, "[") {
			h := strings.TrimPrefix(strings.TrimPrefix(l, "["), "[")
			if k := strings.Index(h, "]"); k >= 0 {
				h = h[:k]
			}
			table = splitKey(h)
			for j := 1; j <= len(table); j++ {
				k := strings.Join(table[:j], "\x00")
				if _, ok := out[k]; !ok || j == len(table) {
					out[k] = n
				}
			}
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		full := append(slices.Clone(table), splitKey(k)...)
		if _, seen := out[strings.Join(full, "\x00")]; !seen {
			out[strings.Join(full, "\x00")] = n
		}
		v = strings.TrimSpace(v)
		for _, q := range []string{`"""`, `'''`} {
			if strings.HasPrefix(v, q) && strings.Count(v, q) == 1 {
				inMulti = q
			}
		}
		if strings.HasPrefix(v, "[") {
			depth = strings.Count(v, "[") - strings.Count(v, "]")
		}
	}
	return out
}

// splitKey splits a TOML key on dots outside quotes and unquotes it.
func splitKey(k string) []string {
	var out []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
		case c == '.':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, strings.TrimSpace(cur.String()))
}
