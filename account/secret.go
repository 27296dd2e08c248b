package account

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
}

// Password returns the password.
func (ps PasswordSource) Password(ctx context.Context) (string, error) {
	switch {
	case ps.File != "":
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
		return "", errors.New("no password: give one with a password file, a password command or the " + ps.Env + " environment variable (there is no terminal to ask on)")
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
