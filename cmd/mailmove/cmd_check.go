package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/mailmove/mailmove/formats/archive"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	identity := identityFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove check [--json] [--identity FILE] ARCHIVE\n\nReads every message of an archive and checks it against the index (size and SHA-256),\nand that no file holds what the index does not know. Changes nothing. An encrypted\narchive is checked whole with --identity; without it, only its files and their sizes.\n\n")
		fs.PrintDefaults()
	}
	pos, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return exitUsage
	}
	a, err := archive.OpenReadOnly(pos[0])
	if err != nil {
		failJSON(stdout, *jsonOut, "check", err)
		return errorExit(stderr, err)
	}
	defer a.Close()
	ids, err := readIdentity(*identity)
	if err == nil {
		err = a.SetIdentities(ids)
	}
	if err != nil {
		failJSON(stdout, *jsonOut, "check", err)
		return errorExit(stderr, err)
	}
	res, err := a.Check()
	if err != nil {
		failJSON(stdout, *jsonOut, "check", err)
		return errorExit(stderr, err)
	}
	if *jsonOut {
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
		return exitPartial
	}
	return exitOK
}
