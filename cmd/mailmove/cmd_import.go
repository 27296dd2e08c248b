package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/imports"
)

func cmdImport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := addAccountFlags(fs, "to")
	format := fs.String("format", "", "input `format`: mailmove, mbox, eml, maildir or takeout (default: detected)")
	folder := fs.String("folder", "", "put every message into this one target `folder`")
	prefix := fs.String("prefix", "", "put the folders under this target `folder` (e.g. Imported)")
	var maps multiFlag
	fs.Var(&maps, "map", "`SRC=DST`: source folder SRC goes to target folder DST (repeatable)")
	labels := fs.String("labels", "keywords", "Gmail labels (Takeout, or a Gmail archive) beyond the message's folder: `keywords` or folders (one copy per label); into Gmail they are set as labels")
	maxPerDay := fs.Int64("max-bytes-per-day", 0, "stop cleanly before `n` bytes are uploaded to this account in one day (UTC), counting every run of the day (Gmail's daily IMAP upload cap is about 500 MB); 0: no limit")
	dry := fs.Bool("dry-run", false, "show what would be created and appended, change nothing")
	conns := fs.Int("connections", 0, "use at most `n` IMAP connections, one target folder each (default 4; 2 for Proton Mail Bridge)")
	jdir := fs.String("journal-dir", defaultJournalDir(), "where import journals are kept (`dir`)")
	identity := identityFlag(fs)
	jsonOut := fs.Bool("json", false, "print a machine-readable summary on stdout")
	quiet := fs.Bool("quiet", false, "print nothing but errors, even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove import --to URL [flags] SOURCE\n\nSOURCE is a mailmove archive, an mbox file or tree, a folder of .eml files, a Maildir,\na Gmail Takeout mbox, or - for an mbox on standard input.\n\n")
		fs.PrintDefaults()
	}
	rest, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(rest) != 1 {
		fmt.Fprintln(stderr, "mailmove import: give exactly one SOURCE (an archive, an mbox, a folder of .eml files, a Maildir, or -)")
		return exitUsage
	}
	switch imports.Format(*format) {
	case imports.FormatAuto, imports.FormatArchive, imports.FormatMbox, imports.FormatEML, imports.FormatMaildir, imports.FormatTakeout:
	default:
		fmt.Fprintf(stderr, "mailmove import: --format %s: want mailmove, mbox, eml, maildir or takeout\n", *format)
		return exitUsage
	}
	if *labels != "keywords" && *labels != "folders" {
		fmt.Fprintf(stderr, "mailmove import: --labels %s: want keywords or folders\n", *labels)
		return exitUsage
	}
	m, ok := parseMaps(maps, stderr)
	if !ok {
		return exitUsage
	}
	if rest[0] != "-" {
		if _, err := os.Stat(rest[0]); err != nil {
			fmt.Fprintf(stderr, "mailmove import: %v\n", err)
			return exitUsage
		}
	}
	ids, err := readIdentity(*identity)
	if err != nil {
		fmt.Fprintf(stderr, "mailmove import: --identity: %v\n", err)
		return exitUsage
	}
	cfg, stop, err := to.config(ctx, stderr)
	if err != nil {
		return errorExit(stderr, err)
	}
	defer stop()
	tty := !*quiet && isTerminal(os.Stderr)
	opts := imports.Options{
		Account: cfg, Source: rest[0], Format: imports.Format(*format), Folder: *folder, Prefix: *prefix, Map: m,
		LabelsAsFolders: *labels == "folders", DryRun: *dry, JournalDir: *jdir, Connections: *conns,
		Identities: ids,
	}
	if *maxPerDay > 0 && !*dry {
		b, err := account.NewDailyBudget(dailyDir(), cfg.URL.String(), "upload", *maxPerDay)
		if err != nil {
			return errorExit(stderr, err)
		}
		opts.Budget = b
		defer b.Save()
	}
	st := newStatusLine(stderr, tty, "connecting to "+cfg.URL.Addr())
	defer st.clear()
	cfg.Status = st.set
	var prog *progress
	if tty && !*dry {
		prog = newProgress(stderr)
		prog.status = st
		opts.Progress = prog
		opts.Log = func(format string, a ...any) { prog.log(fmt.Sprintf(format, a...)) }
	}
	sum, runErr, stopped := runImport(ctx, opts)
	st.clear()
	if stopped {
		// the run did not end within the grace period after Ctrl-C or
		// SIGTERM (input or a server that does not answer): leave it
		fmt.Fprintf(stderr, "mailmove: interrupted; the import did not stop within %s, so it was left. What was appended is recorded; run the same command again to go on\n", stopGrace)
		return exitFailed
	}
	if prog != nil {
		prog.finish()
	}
	if *jsonOut {
		writeJSON(stdout, struct {
			header
			*importReport
		}{newHeader("import"), newImportReport(sum, runErr)})
	} else if *dry {
		printImportPlan(stdout, sum)
	} else if tty {
		printImportPlan(stderr, sum)
	}
	partial := printImportProblems(stderr, sum)
	if runErr != nil {
		if sum.Seen > 0 {
			fmt.Fprintf(stderr, "mailmove: %s\n", sum.Tally())
		}
		if errors.Is(runErr, imports.ErrOverQuota) {
			fmt.Fprintf(stderr, "mailmove: %v\n", runErr)
			return exitFailed
		}
		return errorExit(stderr, runErr)
	}
	if !*jsonOut && (tty || len(sum.Failed) > 0) {
		verb := "imported into"
		if *dry {
			verb = "would go to"
		}
		fmt.Fprintf(stderr, "%s %s %s: %s, %s, in %s\n", sum.Source, verb, cfg.URL, sum.Tally(), humanBytes(sum.Bytes), sum.Elapsed.Round(10*time.Millisecond))
	}
	if partial {
		return exitPartial
	}
	return exitOK
}

// stopGrace is how long an import may take to stop after Ctrl-C or
// SIGTERM before the command leaves it.
const stopGrace = 5 * time.Second

// runImport runs an import; after ctx ends (Ctrl-C, SIGTERM) it waits at
// most stopGrace for the run to stop (stopped: it did not).
func runImport(ctx context.Context, opts imports.Options) (sum *imports.Summary, err error, stopped bool) {
	type result struct {
		sum *imports.Summary
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, e := imports.Run(ctx, opts)
		ch <- result{s, e}
	}()
	select {
	case r := <-ch:
		return r.sum, r.err, false
	case <-ctx.Done():
	}
	select {
	case r := <-ch:
		return r.sum, r.err, false
	case <-time.After(stopGrace):
		return nil, ctx.Err(), true
	}
}

func defaultJournalDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "mailmove", "imports")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "mailmove", "imports")
	}
	return ""
}

// parseMaps reads --map SRC=DST flags.
func parseMaps(maps []string, stderr io.Writer) (map[string]string, bool) {
	m := map[string]string{}
	for _, s := range maps {
		src, dst, ok := strings.Cut(s, "=")
		if !ok || src == "" || dst == "" {
			fmt.Fprintf(stderr, "mailmove: --map %q: want SRC=DST\n", s)
			return nil, false
		}
		m[src] = dst
	}
	return m, true
}
