package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `# mailmove backups
[accounts.proton]
url = "bridge://me@proton.me"
ca_file = "~/.config/protonmail/bridge-v3/cert.pem"
password_cmd = "pass show proton-bridge"

[accounts."mbox-org"]
url = "imaps://me@mailbox.org@imap.mailbox.org"
password_file = "~/.secrets/mailbox-org"
timeout = "2m"

[jobs.proton]
account = "proton"
format = "mbox"
out = "~/Backups/mail/proton"
exclude = [
  "Spam",
  "Trash",
]
mirror = true

[jobs.mbox-org]
account = "mbox-org"
format = "eml"
out = "/srv/backup/mbox-org"
folders = ["INBOX", "Archive/*"]
connections = 2
on_failure = "notify-send mailmove \"$MAILMOVE_SUMMARY\""
`

func TestParseGood(t *testing.T) {
	c, err := Parse("config.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
	if strings.Join(c.Order, ",") != "proton,mbox-org" {
		t.Fatalf("order %v", c.Order)
	}
	p := c.Jobs["proton"]
	if p.Out != filepath.Join(home, "Backups/mail/proton") || !p.Mirror || strings.Join(p.Exclude, ",") != "Spam,Trash" || p.Format != "mbox" || p.MboxLineEndings != "lf" {
		t.Fatalf("job proton: %+v", p)
	}
	a := c.Accounts["proton"]
	if a.CAFile != filepath.Join(home, ".config/protonmail/bridge-v3/cert.pem") || a.PasswordCmd != "pass show proton-bridge" || a.Line != 2 {
		t.Fatalf("account proton: %+v", a)
	}
	m := c.Jobs["mbox-org"]
	if m.Connections != 2 || m.Line != 22 || strings.Join(m.Folders, ",") != "INBOX,Archive/*" || c.Accounts["mbox-org"].Timeout.Minutes() != 2 {
		t.Fatalf("job mbox-org: %+v", m)
	}
}

// Each kind of mistake is an *Error that names the file and the line.
func TestMistakesNameTheLine(t *testing.T) {
	acct := "[accounts.a]\nurl = \"imaps://me@example.org\"\npassword_env = \"PW\"\n\n" // lines 1-4
	cases := []struct {
		name, src string
		line      int
		want      string
	}{
		{"syntax", acct + "[jobs.j]\naccount = \"a\"\nformat = mbox\n", 7, "TOML syntax"},
		{"unknown key", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x\"\nexlude = [\"Spam\"]\n", 9, `unknown key "exlude"`},
		{"unknown account key", "[accounts.a]\nurl = \"imaps://me@example.org\"\npasword_file = \"/x\"\n", 3, `unknown key "pasword_file"`},
		{"unknown top key", acct + "[job.j]\naccount = \"a\"\n", 5, `unknown key "job"`},
		{"wrong type", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x\"\nmirror = \"yes\"\n", 9, "mirror must be true or false"},
		{"wrong list type", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x\"\nexclude = \"Spam\"\n", 9, "exclude must be a list"},
		{"missing account", acct + "[jobs.j]\naccount = \"b\"\nformat = \"mbox\"\nout = \"/x\"\n", 6, `names account "b"`},
		{"no account", acct + "[jobs.j]\nformat = \"mbox\"\nout = \"/x\"\n", 5, "has no account"},
		{"missing out", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\n", 5, "has no out"},
		{"relative out", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"Mail\"\n", 8, "absolute path"},
		{"bad format", acct + "[jobs.j]\naccount = \"a\"\nformat = \"maildir\"\nout = \"/x\"\n", 7, `format "maildir"`},
		{"password in url", "[accounts.a]\n\nurl = \"imaps://me:hunter2@example.org\"\n", 3, "holds a password"},
		{"password key", "[accounts.a]\nurl = \"imaps://me@example.org\"\npassword = \"hunter2\"\n", 3, "never goes in the configuration file"},
		{"bad url", "[accounts.a]\nurl = \"pop3://me@example.org\"\n", 2, "unknown scheme"},
		{"no url", "[accounts.a]\npassword_env = \"X\"\n", 1, "has no url"},
		{"bad recipient", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x\"\nencrypt_to = [\"AGE1xyz\"]\n", 9, "not an age recipient"},
		{"bad compress", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x\"\ncompress = \"gzip\"\n", 9, `compress "gzip"`},
		{"bad pattern", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x\"\nfolders = [\"[a\"]\n", 9, "bad pattern"},
		{"same out", acct + "[jobs.j]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x\"\n[jobs.k]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/x/\"\n", 12, "as job j does"},
		{"two passwords", "[accounts.a]\nurl = \"imaps://me@example.org\"\npassword_env = \"PW\"\npassword_cmd = \"pass x\"\n", 1, "not several"},
		{"bad timeout", "[accounts.a]\nurl = \"imaps://me@example.org\"\ntimeout = 60\n", 3, "timeout must be a string"},
	}
	for _, c := range cases {
		_, err := Parse("/etc/mm.toml", []byte(c.src))
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: %v is not a *config.Error", c.name, err)
			continue
		}
		if ce.Line != c.line || ce.File != "/etc/mm.toml" || !strings.Contains(ce.Error(), c.want) {
			t.Errorf("%s: got line %d %q; want line %d, %q", c.name, ce.Line, ce.Error(), c.line, c.want)
		}
		if !strings.HasPrefix(ce.Error(), "/etc/mm.toml:") || strings.Contains(ce.Error(), "hunter2") {
			t.Errorf("%s: %q", c.name, ce.Error())
		}
	}
}

func TestLoadModeAndMissing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.toml")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(p, []byte(good), 0o666)
	os.Chmod(p, 0o666)
	var me *ModeError
	if _, err := Load(p); !errors.As(err, &me) {
		t.Fatalf("world-writable config: %v", err)
	}
	os.Chmod(p, 0o644) // readable is fine: the file holds no secret
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	if p, _ := DefaultPath(); p != "/cfg/mailmove/config.toml" {
		t.Fatal(p)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/u")
	if p, _ := DefaultPath(); p != "/home/u/.config/mailmove/config.toml" {
		t.Fatal(p)
	}
}

// The full example of the README parses, and means what it says.
func TestReadmeExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "### The configuration file")
	if i < 0 {
		t.Fatal("no configuration section in the README")
	}
	s = s[i:]
	start := strings.Index(s, "```toml\n")
	end := strings.Index(s[start+8:], "```")
	c, err := Parse("README.md", []byte(s[start+8:start+8+end]))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Accounts) != 3 || strings.Join(c.Order, ",") != "proton,mbox-org,work" || !c.Jobs["mbox-org"].Mirror ||
		c.Accounts["work"].PasswordEnv != "WORK_MAIL_PASSWORD" || !c.Jobs["work"].MboxStatusHeaders {
		t.Fatalf("%+v", c)
	}
}
