package account

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/term"
)

// PasswordSource says where a password comes from. The first one set wins, in
// the order File, Command, Env; with none set, the user is asked on the
// terminal, and without a terminal it is an error.
type PasswordSource struct {
	// File is a file whose first line is the password.
	File string
	// Command is run with "sh -c"; its first line of output is the password.
	Command string
	// Env is the name of an environment variable that holds the password.
	Env string
	// Prompt is shown when the password is read from the terminal.
	Prompt string
	// FlagPrefix is the prefix of the account's flags ("from", "to"), for
	// error messages that name them.
	FlagPrefix string
}

// Password returns the password.
func (ps PasswordSource) Password(ctx context.Context) (string, error) {
	switch {
	case ps.File != "":
		if err := checkPasswordFileMode(ps.File); err != nil {
			return "", err
		}
		b, err := os.ReadFile(ps.File)
		if err != nil {
			return "", fmt.Errorf("reading the password file: %w", err)
		}
		pw := firstLine(b)
		if pw == "" {
			return "", fmt.Errorf("the password file %s is empty", ps.File)
		}
		return pw, nil
	case ps.Command != "":
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", ps.Command)
		cmd.Stdin = os.Stdin
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("the password command %q failed: %w", ps.Command, err)
		}
		pw := firstLine(out)
		if pw == "" {
			return "", fmt.Errorf("the password command %q printed nothing", ps.Command)
		}
		return pw, nil
	case ps.Env != "" && os.Getenv(ps.Env) != "":
		return os.Getenv(ps.Env), nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return "", errors.New("no password: give one with " + flagName(ps.FlagPrefix, "password-file") + ", " + flagName(ps.FlagPrefix, "password-cmd") + " or the " + ps.Env + " environment variable (there is no terminal to ask on)")
	}
	defer tty.Close()
	fmt.Fprint(tty, ps.Prompt)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return string(b), nil
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return strings.TrimRight(string(b), "\r")
}

// PasswordFileModeError is a password file that users other than its owner
// can read (or write). mailmove refuses it, as ssh refuses such a key: the
// password would be one `cat` away for every account on the machine.
type PasswordFileModeError struct {
	// Path is the password file.
	Path string
	// Mode is its permission bits.
	Mode os.FileMode
}

func (e *PasswordFileModeError) Error() string {
	return fmt.Sprintf("the password file %s is readable by others (mode %04o): run chmod 600 %s and try again (mailmove refuses such a file, as ssh refuses a private key others can read)",
		e.Path, uint32(e.Mode.Perm()), shellQuote(e.Path))
}

// checkPasswordFileMode refuses a regular password file that group or
// others may read or write. On Windows, file modes say nothing about that: no check.
func checkPasswordFileMode(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("reading the password file: %w", err)
	}
	// Pipes (--from-password-file <(pass show x)) and devices are not
	// files others can read later.
	if fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
		return &PasswordFileModeError{Path: path, Mode: fi.Mode()}
	}
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./~+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
