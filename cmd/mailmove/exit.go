package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// How a verb runs. parse<Verb> reads the command line into the verb's
// options struct and checks it (a mistake is a *usageError); run<Verb> does
// the work and returns an error; exitCode, below, chooses the exit code
// from that error, in this one place. An outcome that is not a failure of
// the run (some messages not copied, differences found) is a *reported
// error: the verb has told the user what happened, and it carries the code.

// usageError is a mistake in the command line: printed, exit 2.
type usageError struct{ verb, msg string }

func (e *usageError) Error() string { return "mailmove " + e.verb + ": " + e.msg }

// usagef is a usageError of a verb.
func usagef(verb, format string, a ...any) error {
	return &usageError{verb: verb, msg: fmt.Sprintf(format, a...)}
}

// reported is an outcome the verb has told the user already (its report,
// or the flag package's message), with its exit code.
type reported struct {
	code int
	what string
}

func (e *reported) Error() string { return e.what }

var (
	// errHelp: --help printed the verb's usage (exit 0).
	errHelp = &reported{exitOK, "help printed"}
	// errFailedShown: the run failed, and the verb has said why and
	// what to do (exit 1).
	errFailedShown = &reported{exitFailed, "failed, explained"}
	// errUsageShown: a mistake in the command line, already explained.
	errUsageShown = &reported{exitUsage, "usage error, explained"}
	// errPartial: the run finished, but some messages or folders could
	// not be copied or read (listed).
	errPartial = &reported{exitPartial, "some messages were not copied or read"}
	// errDiffers: verify found messages missing, extra or different.
	errDiffers = &reported{exitDiffers, "differences found"}
	// errLocked: backup gave up on an archive another mailmove held.
	errLocked = &reported{exitLocked, "an archive stayed locked"}
	// errCapShown: a daily transfer cap was reached (said).
	errCapShown = &reported{exitDailyCap, "a daily transfer cap was reached"}
)

// exitCode chooses the exit code of a run from its error, and prints
// what has not been told yet.
func exitCode(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var r *reported
	if errors.As(err, &r) {
		return r.code
	}
	var u *usageError
	if errors.As(err, &u) {
		fmt.Fprintln(stderr, u.Error())
		return exitUsage
	}
	return errorExit(stderr, err)
}

// parseFlags is parseArgs as an error: errHelp after --help, errUsageShown
// after a mistake the flag package has explained.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	pos, code, ok := parseArgs(fs, args, stdout)
	if ok {
		return pos, nil
	}
	if code == exitOK {
		return nil, errHelp
	}
	return nil, errUsageShown
}
