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

// cmdImport puts local mail (an archive, an mbox, a folder of .eml files,
// a Maildir, a Takeout mbox, or an mbox on standard input) into an account.
func cmdImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseImport(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runImport(ctx, o, stdout, stderr)
}

// importOptions are import's command line.
type importOptions struct {
	to       *accountFlags
	identity string
	// run is what imports.Run is told (Account, Identities, Budget,
	// Progress and Log are set by runImport).
	run       imports.Options
	maxPerDay int64
	json      bool
	quiet     bool
}

// parseImport reads import's command line and checks it.
func parseImport(args []string, stdout, stderr io.Writer) (*importOptions, error) {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &importOptions{to: addAccountFlags(fs, "to")}
	r := &o.run
	format := fs.String("format", "", "input `format`: mailmove, mbox, eml, maildir or takeout (default: detected)")
	fs.StringVar(&r.Folder, "folder", "", "put every message into this one target `folder`")
	fs.StringVar(&r.Prefix, "prefix", "", "put the folders under this target `folder` (e.g. Imported)")
	var maps multiFlag
	fs.Var(&maps, "map", "`SRC=DST`: source folder SRC goes to target folder DST (repeatable)")
	labels := fs.String("labels", "keywords", "Gmail labels (Takeout, or a Gmail archive) beyond the message's folder: `keywords` or folders (one copy per label); into Gmail they are set as labels")
	fs.Int64Var(&o.maxPerDay, "max-bytes-per-day", 0, "stop cleanly before `n` bytes are uploaded to this account in one day (UTC), counting every run of the day (Gmail's daily IMAP upload cap is about 500 MB); 0: no limit")
	fs.BoolVar(&r.DryRun, "dry-run", false, "show what would be created and appended, change nothing")
	fs.IntVar(&r.Connections, "connections", 0, "use at most `n` IMAP connections, one target folder each (default 4; 2 for Proton Mail Bridge)")
	fs.StringVar(&r.JournalDir, "journal-dir", defaultJournalDir(), "where import journals are kept (`dir`)")
	identity := identityFlag(fs)
	fs.BoolVar(&o.json, "json", false, "print a machine-readable summary on stdout")
	fs.BoolVar(&o.quiet, "quiet", false, "print nothing but errors, even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove import --to URL [flags] SOURCE\n\nSOURCE is a mailmove archive, an mbox file or tree, a folder of .eml files, a Maildir,\na Gmail Takeout mbox, or - for an mbox on standard input.\n\n")
		fs.PrintDefaults()
	}
	rest, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(rest) != 1 {
		return nil, usagef("import", "give exactly one SOURCE (an archive, an mbox, a folder of .eml files, a Maildir, or -)")
	}
	r.Source = rest[0]
	r.Format = imports.Format(*format)
	switch r.Format {
	case imports.FormatAuto, imports.FormatArchive, imports.FormatMbox, imports.FormatEML, imports.FormatMaildir, imports.FormatTakeout:
	default:
		return nil, usagef("import", "--format %s: want mailmove, mbox, eml, maildir or takeout", *format)
	}
	if *labels != "keywords" && *labels != "folders" {
		return nil, usagef("import", "--labels %s: want keywords or folders", *labels)
	}
	r.LabelsAsFolders = *labels == "folders"
	m, ok := parseMaps(maps, stderr)
	if !ok {
		return nil, errUsageShown
	}
	r.Map = m
	if r.Source != "-" {
		if _, err := os.Stat(r.Source); err != nil {
			return nil, usagef("import", "%v", err)
		}
	}
	o.identity = *identity
	return o, nil
}

// runImport imports and prints the report; messages or input that could
// not be imported are errPartial.
func runImport(ctx context.Context, o *importOptions, stdout, stderr io.Writer) error {
	ids, err := readIdentity(o.identity)
	if err != nil {
		return usagef("import", "--identity: %v", err)
	}
	cfg, stop, err := o.to.config(ctx, stderr)
	if err != nil {
		return err
	}
	defer stop()
	tty := !o.quiet && isTerminal(os.Stderr)
	opts := o.run
	opts.Account, opts.Identities = cfg, ids
	dry := opts.DryRun
	if o.maxPerDay > 0 && !dry {
		b, err := account.NewDailyBudget(dailyDir(), cfg.URL.String(), "upload", o.maxPerDay)
		if err != nil {
			return err
		}
		opts.Budget = b
		defer b.Save()
	}
	st := newStatusLine(stderr, tty, "connecting to "+cfg.URL.Addr())
	defer st.clear()
	cfg.Status = st.set
	var prog *progress
	if tty && !dry {
		prog = newProgress(stderr)
		prog.status = st
		opts.Progress = prog
		opts.Log = func(format string, a ...any) { prog.log(fmt.Sprintf(format, a...)) }
	}
	sum, runErr, stopped := importWithGrace(ctx, opts)
	st.clear()
	if stopped {
		// the run did not end within the grace period after Ctrl-C or
		// SIGTERM (input or a server that does not answer): leave it
		fmt.Fprintf(stderr, "mailmove: interrupted; the import did not stop within %s, so it was left. What was appended is recorded; run the same command again to go on\n", stopGrace)
		return errFailedShown
	}
	if prog != nil {
		prog.finish()
	}
	if o.json {
		writeJSON(stdout, struct {
			header
			*importReport
		}{newHeader("import"), newImportReport(sum, runErr)})
	} else if dry {
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
			return errFailedShown
		}
		return runErr
	}
	if !o.json && (tty || len(sum.Failed) > 0) {
		verb := "imported into"
		if dry {
			verb = "would go to"
		}
		fmt.Fprintf(stderr, "%s %s %s: %s, %s, in %s\n", sum.Source, verb, cfg.URL, sum.Tally(), humanBytes(sum.Bytes), sum.Elapsed.Round(10*time.Millisecond))
	}
	if partial {
		return errPartial
	}
	return nil
}

// stopGrace is how long an import may take to stop after Ctrl-C or
// SIGTERM before the command leaves it.
const stopGrace = 5 * time.Second

// importWithGrace runs an import; after ctx ends (Ctrl-C, SIGTERM) it waits at
// most stopGrace for the run to stop (stopped: it did not).
func importWithGrace(ctx context.Context, opts imports.Options) (sum *imports.Summary, err error, stopped bool) {
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
