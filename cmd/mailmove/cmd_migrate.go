package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/imports"
)

// migrateOptions are migrate's flags.
type migrateOptions struct {
	include, exclude, maps multiFlag
	prefix                 string
	conns                  int
	dry, jsonOut, quiet    bool
	labels                 string
	del                    bool
	since, before          string
	keepArchive            string
	archiveFormat          string
	encryptTo, encryptFile multiFlag
	compress               string
	journalDir             string
	maxPerDay              int64
}

// cmdMigrate copies one account into another, streamed: each message goes
// from the source's FETCH straight into the target's APPEND, with no
// staging copy (engine.Run). Runs are incremental both ways: what is new is
// copied, flags and keywords of copied messages are brought up to date.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := addAccountFlags(fs, "from")
	to := addAccountFlags(fs, "to")
	var o migrateOptions
	fs.Var(&o.include, "folder", "migrate only folders matching this glob `pattern` (repeatable)")
	fs.Var(&o.exclude, "exclude", "skip folders matching this glob `pattern` (repeatable)")
	fs.StringVar(&o.prefix, "prefix", "", "put the folders under this target `folder`")
	fs.Var(&o.maps, "map", "`SRC=DST`: source folder SRC goes to target folder DST (repeatable)")
	fs.IntVar(&o.conns, "connections", 4, "copy at most `n` folders at once (each uses a connection on each side; default 2 into Proton Mail Bridge)")
	fs.BoolVar(&o.dry, "dry-run", false, "show the folder mapping with counts and sizes, and what would be copied; change nothing")
	fs.BoolVar(&o.jsonOut, "json", false, "print a machine-readable summary on stdout")
	fs.BoolVar(&o.quiet, "quiet", false, "print nothing but errors, even on a terminal")
	fs.StringVar(&o.labels, "labels", "keywords", "Proton and Gmail labels: `keywords` on the message's copy (Gmail as a target: its labels), folders (every label copied as a folder), or skip")
	fs.Int64Var(&o.maxPerDay, "max-bytes-per-day", 0, "stop cleanly before `n` bytes are downloaded from the source or uploaded to the target in one day (UTC), counting every run of the day (Gmail's daily IMAP caps: about 2 500 MB down, 500 MB up); 0: no limit")
	fs.BoolVar(&o.del, "delete", false, "delete at the target the messages this tool copied that are gone from the source")
	fs.StringVar(&o.since, "since", "", "copy only messages that arrived on or after `DATE` (YYYY-MM-DD, INTERNALDATE)")
	fs.StringVar(&o.before, "before", "", "copy only messages that arrived before `DATE` (YYYY-MM-DD, INTERNALDATE)")
	fs.StringVar(&o.keepArchive, "keep-archive", "", "also write the messages copied into this archive `dir` (a mailmove archive, as export writes it)")
	fs.StringVar(&o.archiveFormat, "archive-format", "", "a new archive (--keep-archive, or --to DIR) holds `eml` (one file per message, the default) or mbox; an existing one keeps its own")
	fs.Var(&o.encryptTo, "encrypt-to", "a new archive (--keep-archive, --to DIR) is encrypted to this age `recipient` (repeatable; an encrypted archive takes the same recipients to be added to)")
	fs.Var(&o.encryptFile, "encrypt-to-file", "encrypt the archive to the recipients in this `file` (one a line, as age -R; repeatable)")
	fs.StringVar(&o.compress, "compress", "", "a new archive's messages are compressed with `zstd`")
	staging := fs.String("staging", "", "no longer used: migrate keeps no staging archive (`dir` ignored; kept so that old scripts run)")
	fs.StringVar(&o.journalDir, "journal-dir", "", "where migrate journals live (default $XDG_STATE_HOME/mailmove/migrate)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove migrate --from URL --to URL [flags]\n\nCopies every folder of one account into another, each message streamed from the\nsource into the target (no staging copy). Run it again to copy what is new and bring\nflags up to date.\n\n")
		fs.PrintDefaults()
	}
	pos, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "mailmove migrate: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	if *staging != "" {
		fmt.Fprintln(stderr, "mailmove migrate: --staging is ignored: migrate streams each message from the source into the target and keeps no staging archive (use --keep-archive DIR for an archive too)")
	}
	m, ok := parseMaps(o.maps, stderr)
	if !ok {
		return exitUsage
	}
	var sel engine.Select
	for _, d := range []struct {
		flag, v string
		t       *time.Time
	}{{"since", o.since, &sel.Since}, {"before", o.before, &sel.Before}} {
		if d.v == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, d.v)
		if err != nil {
			fmt.Fprintf(stderr, "mailmove migrate: --%s %q: write the date as YYYY-MM-DD\n", d.flag, d.v)
			return exitUsage
		}
		*d.t = t
	}
	if o.del && sel != (engine.Select{}) {
		fmt.Fprintln(stderr, "mailmove migrate: --delete cannot go with --since or --before (a message outside the dates is not gone from the source)")
		return exitUsage
	}
	mode := engine.LabelMode(o.labels)
	if mode != engine.LabelsKeywords && mode != engine.LabelsFolders && mode != engine.LabelsSkip {
		fmt.Fprintf(stderr, "mailmove migrate: --labels %q: choose keywords, folders or skip\n", o.labels)
		return exitUsage
	}
	switch o.archiveFormat {
	case "", "eml", "mbox":
	default:
		fmt.Fprintf(stderr, "mailmove migrate: --archive-format %s: want eml or mbox\n", o.archiveFormat)
		return exitUsage
	}
	sealing, err := sealingFlags(o.encryptTo, o.encryptFile, o.compress)
	if err != nil {
		fmt.Fprintf(stderr, "mailmove migrate: %v\n", err)
		return exitUsage
	}
	toDir := archivePath(*to.url)
	src, stopFrom, err := from.config(ctx, stderr)
	if err != nil {
		return errorExit(stderr, err)
	}
	defer stopFrom()
	var dst *account.Config
	toName := toDir
	if toDir == "" {
		var stopTo func()
		dst, stopTo, err = to.config(ctx, stderr)
		if err != nil {
			return errorExit(stderr, err)
		}
		defer stopTo()
		toName = dst.URL.String()
	}
	if o.journalDir == "" {
		o.journalDir = filepath.Join(filepath.Dir(defaultJournalDir()), "migrate")
	}
	sum := sha256.Sum256([]byte("migrate v1\x00" + src.URL.String() + "\x00" + toName))
	journal := filepath.Join(o.journalDir, hex.EncodeToString(sum[:8])+".jsonl")

	tty := !o.quiet && isTerminal(os.Stderr)
	start := time.Now()
	st := newStatusLine(stderr, tty, "connecting to "+src.URL.Addr())
	defer st.clear()
	src.Status = st.set
	if dst != nil {
		dst.Status = st.set
	}
	if o.maxPerDay < 0 {
		fmt.Fprintln(stderr, "mailmove migrate: --max-bytes-per-day must be 0 (no limit) or more")
		return exitUsage
	}
	source := &export.IMAPSource{Account: src, Include: o.include, Exclude: o.exclude, LabelMode: mode}
	defer source.Close()
	var sink engine.Sink
	var imapSink *imports.IMAPSink
	if toDir != "" {
		if len(m) > 0 || o.prefix != "" {
			fmt.Fprintln(stderr, "mailmove migrate: --map and --prefix are for an account as the target: an archive names its folders as export does")
			return exitUsage
		}
		arch, err := openMigrateArchive(toDir, o.archiveFormat, sealing)
		if err != nil {
			return errorExit(stderr, fmt.Errorf("--to %s: %w", toDir, err))
		}
		defer arch.Close()
		as := &export.ArchiveSink{Archive: arch, Source: source}
		defer as.Close()
		sink = as
	} else {
		imapSink = &imports.IMAPSink{Account: dst, Map: m, Prefix: o.prefix}
		defer imapSink.Close()
		sink = imapSink
	}
	if o.maxPerDay > 0 && !o.dry {
		if source.Budget, err = account.NewDailyBudget(dailyDir(), src.URL.String(), "download", o.maxPerDay); err != nil {
			return errorExit(stderr, err)
		}
		defer source.Budget.Save()
		if imapSink != nil {
			if imapSink.Budget, err = account.NewDailyBudget(dailyDir(), dst.URL.String(), "upload", o.maxPerDay); err != nil {
				return errorExit(stderr, err)
			}
			defer imapSink.Budget.Save()
		}
	}
	eo := engine.Options{Source: source, Sink: sink, JournalPath: journal, Labels: mode, Delete: o.del, DryRun: o.dry,
		Select: sel, Connections: o.conns}
	var prog *progress
	if tty && !o.dry {
		prog = newProgress(stderr)
		prog.status = st
		eo.Progress = prog
		eo.Log = func(format string, a ...any) { prog.log(fmt.Sprintf(format, a...)) }
		source.Log = eo.Log
	}
	var keep *export.ArchiveSink
	if o.keepArchive != "" && !o.dry {
		arch, err := openMigrateArchive(o.keepArchive, o.archiveFormat, sealing)
		if err != nil {
			return errorExit(stderr, fmt.Errorf("--keep-archive: %w", err))
		}
		defer arch.Close()
		keep = &export.ArchiveSink{Archive: arch, Source: source}
		eo.Keep = keep
	}
	var esum *engine.Summary
	if imapSink != nil {
		err = imapSink.Start(ctx)
	}
	connsSet := false
	fs.Visit(func(f *flag.Flag) { connsSet = connsSet || f.Name == "connections" })
	if err == nil && imapSink != nil && imapSink.Bridge() && !connsSet {
		eo.Connections = 2 // as import: Proton paces what Bridge uploads
	}
	if err == nil {
		esum, err = engine.Run(ctx, eo)
		if esum != nil && imapSink != nil {
			esum.Failed = append(esum.Failed, imapSink.Unlabelled...)
		}
	}
	st.clear()
	if prog != nil {
		prog.finish()
	}
	if keep != nil {
		if kerr := keep.Close(); err == nil && kerr != nil {
			err = fmt.Errorf("saving the archive (--keep-archive): %w", kerr)
		}
	}
	if as, ok := sink.(*export.ArchiveSink); ok {
		if kerr := as.Close(); err == nil && kerr != nil {
			err = fmt.Errorf("saving the archive: %w", kerr)
		}
	}
	if o.jsonOut {
		v := struct {
			header
			OK    bool   `json:"ok"`
			Error string `json:"error,omitempty"`
			From  string `json:"from"`
			To    string `json:"to"`
			*engine.Summary
			Seconds float64 `json:"seconds"`
		}{header: newHeader("migrate"), From: src.URL.String(), To: toName, Summary: esum, Seconds: time.Since(start).Seconds()}
		if err != nil {
			v.Error = err.Error()
		}
		v.OK = err == nil && esum != nil && len(esum.Failed) == 0 && len(esum.Undecryptable) == 0 && len(esum.Check.Missing) == 0 && len(esum.Unstorable) == 0
		writeJSON(stdout, v)
	}
	partial := false
	if esum != nil {
		if o.dry && !o.jsonOut {
			printMigratePlan(stdout, esum)
		}
		partial = printMigrateProblems(stderr, esum)
	}
	if err != nil {
		if esum != nil && esum.Copied > 0 {
			fmt.Fprintf(stderr, "mailmove: %d messages were copied before the failure; they are recorded, and the next run goes on from there\n", esum.Copied)
		}
		return errorExit(stderr, err)
	}
	if tty && !o.jsonOut {
		if o.dry {
			n := 0
			for _, f := range esum.Folders {
				n += f.Copy
			}
			fmt.Fprintf(stderr, "%s -> %s: dry run: %d messages would be copied; nothing changed\n", src.URL, toName, n)
		} else {
			fmt.Fprintf(stderr, "%s -> %s: %d messages copied (%s), %d already there, %d with new flags, %d deleted, in %s\n%s\n",
				src.URL, toName, esum.Copied, humanBytes(esum.Bytes), esum.AlreadyThere, esum.FlagsUpdated, esum.Deleted,
				time.Since(start).Round(10*time.Millisecond), checkLine(esum))
		}
	}
	if partial {
		return exitPartial
	}
	return exitOK
}

// checkLine states the check at the end of migrate.
func checkLine(s *engine.Summary) string {
	c := s.Check
	if len(c.Missing) > 0 {
		return fmt.Sprintf("check: %d source messages are NOT at the target (see above)", len(c.Missing))
	}
	line := fmt.Sprintf("check: every one of the %d source messages of %d folders is at the target (Message-ID and size)", c.Messages, c.Folders)
	if c.Unchanged > 0 {
		line += fmt.Sprintf("; %d folders unchanged since the run that checked them", c.Unchanged)
	}
	return line
}

// printMigratePlan prints the folder mapping of a dry run.
func printMigratePlan(w io.Writer, s *engine.Summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE FOLDER\tTARGET FOLDER\tMESSAGES\tSIZE\tTO COPY\tCOPY SIZE\tALREADY THERE")
	for _, f := range s.Folders {
		target := f.Target
		if target == "" {
			target = "(not copied)"
		} else if f.Create {
			target += " (new)"
		}
		copyN := fmt.Sprint(f.Copy)
		if f.Unchanged {
			copyN = "0 (unchanged)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\n", f.Source, target, f.Messages, humanBytes(f.Bytes), copyN, humanBytes(f.CopyBytes), f.Present)
	}
	tw.Flush()
}

// printMigrateProblems reports what did not go as it should, on stderr; it
// reports whether there was anything (exit 3).
func printMigrateProblems(stderr io.Writer, s *engine.Summary) bool {
	bad := false
	for _, f := range s.Failed {
		bad = true
		if f.UID != 0 {
			fmt.Fprintf(stderr, "mailmove: %s UID %d: %s\n", f.Folder, f.UID, f.Error)
		} else {
			fmt.Fprintf(stderr, "mailmove: folder %s: %s\n", f.Folder, f.Error)
		}
	}
	for _, f := range s.Undecryptable {
		bad = true
		fmt.Fprintf(stderr, "mailmove: %s UID %d: %s\n", f.Folder, f.UID, f.Error)
	}
	if len(s.Unstorable) > 0 {
		bad = true
		fmt.Fprintf(stderr, "mailmove: the target cannot store these keywords (its PERMANENTFLAGS has no \\*), so they are not on the copies: %s\n", strings.Join(s.Unstorable, " "))
	}
	for _, f := range s.Check.Missing {
		bad = true
		fmt.Fprintf(stderr, "mailmove: check: %s: %s\n", f.Folder, f.Error)
	}
	return bad
}

// archivePath returns v when it names a local archive folder rather than
// an account URL (no "://"; a path with a "/", or an existing folder), else
// "".
func archivePath(v string) string {
	if v == "" || v == "demo" || strings.Contains(v, "://") {
		return ""
	}
	if strings.ContainsRune(v, '/') || strings.ContainsRune(v, filepath.Separator) {
		return v
	}
	if fi, err := os.Stat(v); err == nil && fi.IsDir() {
		return v
	}
	return ""
}

// openMigrateArchive opens the archive migrate writes (--to DIR,
// --keep-archive): an existing one as it is, a new one in format (eml by
// default) with sealing.
func openMigrateArchive(dir, format string, sealing archive.Sealing) (*archive.Archive, error) {
	f := archive.EML
	if format == "mbox" {
		f = archive.Mbox
	}
	if _, err := os.Stat(filepath.Join(dir, archive.StateDir, "archive.json")); err == nil {
		f = "" // as it is
	}
	a, err := archive.OpenSealed(dir, f, false, "", "mailmove "+version, sealing)
	if err == nil && format != "" && a.Header.Format != archive.Format(format) {
		a.Close()
		return nil, &archive.FormatError{Root: dir, Have: a.Header.Format, Want: archive.Format(format)}
	}
	return a, err
}
