package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mailmove/mailmove/formats/archive"
)

// cmdCheck reads every message of an archive and checks it against the
// index; problems found are errPartial. It changes nothing.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseCheck(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runCheck(ctx, o, stdout, stderr)
}

// checkOptions are check's command line.
type checkOptions struct {
	archive  string
	identity string
	json     bool
}

// parseCheck reads check's command line and checks it.
func parseCheck(args []string, stdout, stderr io.Writer) (*checkOptions, error) {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &checkOptions{}
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	identity := identityFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove check [--json] [--identity FILE] ARCHIVE\n\nReads every message of an archive and checks it against the index (size and SHA-256),\nand that no file holds what the index does not know. Changes nothing. An encrypted\narchive is checked whole with --identity; without it, only its files and their sizes.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(pos) != 1 {
		fs.Usage()
		return nil, errUsageShown
	}
	o.archive, o.identity = pos[0], *identity
	return o, nil
}

// runCheck checks the archive and prints the result; problems found are
// errPartial.
func runCheck(ctx context.Context, o *checkOptions, stdout, stderr io.Writer) error {
	a, err := archive.OpenReadOnly(o.archive)
	if err != nil {
		failJSON(stdout, o.json, "check", err)
		return err
	}
	defer a.Close()
	ids, err := readIdentity(o.identity)
	if err == nil {
		err = a.SetIdentities(ids)
	}
	if err != nil {
		failJSON(stdout, o.json, "check", err)
		return err
	}
	res, err := a.Check()
	if err != nil {
		failJSON(stdout, o.json, "check", err)
		return err
	}
	if o.json {
		writeJSON(stdout, struct {
			header
			OK bool `json:"ok"`
			*archive.CheckResult
		}{newHeader("check"), len(res.Problems) == 0, res})
	} else {
		for _, p := range res.Problems {
			where := p.File
			if p.UID != 0 {
				where = fmt.Sprintf("%s (%s UID %d)", p.File, p.Folder, p.UID)
			}
			fmt.Fprintf(stderr, "mailmove: %s: %s\n", where, p.What)
		}
		fmt.Fprintf(stdout, "%d folders, %d messages (%s) checked, %d problems\n", res.Folders, res.Messages, humanBytes(res.Bytes), len(res.Problems))
		if res.NotChecked != "" {
			fmt.Fprintf(stderr, "mailmove: not checked: %s\n", res.NotChecked)
		}
	}
	if len(res.Problems) > 0 {
		return errPartial
	}
	return nil
}
