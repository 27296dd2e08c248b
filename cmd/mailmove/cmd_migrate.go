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
	"github.com/mailmove/mailmove/verify"
)

// migrateOptions are migrate's command line.
type migrateOptions struct {
	from, to               *accountFlags
	include, exclude, maps multiFlag
	prefix                 string
	conns                  int
	dry, jsonOut, quiet    bool
	labels                 string
	del                    bool
	since, before          string
	keepArchive            string
	journalDir             string
	maxPerDay              int64
	format, identity       string
	archiveFormat          string
	encryptTo, encryptFile multiFlag
	compress               string

	// Checked by parseMigrate: the folder mapping (--map), the dates
	// (--since, --before), the label mode (--labels), the sealing of a
	// new archive, the archive named by --to ("" for an account), and
	// whether --connections was given.
	m        map[string]string
	sel      engine.Select
	mode     engine.LabelMode
	sealing  archive.Sealing
	toDir    string
	connsSet bool
}

// cmdMigrate copies one account into another, streamed: each message goes
// from the source's FETCH straight into the target's APPEND, with no
// staging copy (engine.Run). Runs are incremental both ways: what is new is
// copied, flags and keywords of copied messages are brought up to date.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseMigrate(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runMigrate(ctx, o, stdout, stderr)
}

// parseMigrate reads migrate's command line and checks it.
func parseMigrate(args []string, stdout, stderr io.Writer) (*migrateOptions, error) {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &migrateOptions{from: addAccountFlags(fs, "from"), to: addAccountFlags(fs, "to")}
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
	fs.StringVar(&o.format, "format", "", "with a local --from: input `format`: mailmove, mbox, eml, maildir or takeout (default: detected)")
	fs.StringVar(&o.identity, "identity", "", "with a local --from: decrypt an encrypted archive with the age identity `file`")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove migrate --from URL|PATH|- --to URL [flags]\n\nCopies every folder of one account into another, each message streamed from the\nsource into the target (no staging copy). Run it again to copy what is new and bring\nflags up to date. --from may also be local input, as import reads it: a mailmove\narchive, an mbox file or tree, a folder of .eml files, a Maildir, a Gmail Takeout\nmbox, or - for an mbox on standard input.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usagef("migrate", "unexpected argument %q", pos[0])
	}
	fs.Visit(func(f *flag.Flag) { o.connsSet = o.connsSet || f.Name == "connections" })
	if *staging != "" {
		fmt.Fprintln(stderr, "mailmove migrate: --staging is ignored: migrate streams each message from the source into the target and keeps no staging archive (use --keep-archive DIR for an archive too)")
	}
	m, ok := parseMaps(o.maps, stderr)
	if !ok {
		return nil, errUsageShown
	}
	o.m = m
	for _, d := range []struct {
		flag, v string
		t       *time.Time
	}{{"since", o.since, &o.sel.Since}, {"before", o.before, &o.sel.Before}} {
		if d.v == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, d.v)
		if err != nil {
			return nil, usagef("migrate", "--%s %q: write the date as YYYY-MM-DD", d.flag, d.v)
		}
		*d.t = t
	}
	if o.del && o.sel != (engine.Select{}) {
		return nil, usagef("migrate", "--delete cannot go with --since or --before (a message outside the dates is not gone from the source)")
	}
	o.mode = engine.LabelMode(o.labels)
	if o.mode != engine.LabelsKeywords && o.mode != engine.LabelsFolders && o.mode != engine.LabelsSkip {
		return nil, usagef("migrate", "--labels %q: choose keywords, folders or skip", o.labels)
	}
	switch o.archiveFormat {
	case "", "eml", "mbox":
	default:
		return nil, usagef("migrate", "--archive-format %s: want eml or mbox", o.archiveFormat)
	}
	if o.sealing, err = sealingFlags(o.encryptTo, o.encryptFile, o.compress); err != nil {
		return nil, usagef("migrate", "%v", err)
	}
	o.toDir = archivePath(*o.to.url)
	if isLocalInput(*o.from.url) {
		switch imports.Format(o.format) {
		case imports.FormatAuto, imports.FormatArchive, imports.FormatMbox, imports.FormatEML, imports.FormatMaildir, imports.FormatTakeout:
		default:
			return nil, usagef("migrate", "--format %s: want mailmove, mbox, eml, maildir or takeout", o.format)
		}
	} else if o.format != "" || o.identity != "" {
		return nil, usagef("migrate", "--format and --identity go with local input only (--from PATH or -)")
	}
	if o.maxPerDay < 0 {
		return nil, usagef("migrate", "--max-bytes-per-day must be 0 (no limit) or more")
	}
	if o.toDir != "" && (len(o.m) > 0 || o.prefix != "") {
		return nil, usagef("migrate", "--map and --prefix are for an account as the target: an archive names its folders as export does")
	}
	if o.journalDir == "" {
		o.journalDir = filepath.Join(filepath.Dir(defaultJournalDir()), "migrate")
	}
	return o, nil
}

// runMigrate copies, runs the closing check and prints the report; messages
// not copied (or found missing by the check) are errPartial.
func runMigrate(ctx context.Context, o *migrateOptions, stdout, stderr io.Writer) error {
	m, sel, mode, toDir := o.m, o.sel, o.mode, o.toDir
	var src *account.Config
	var files *imports.FilesSource
	var fromName string
	var err error
	if isLocalInput(*o.from.url) {
		f, err := localSource(ctx, *o.from.url, o)
		if err != nil {
			return err
		}
		defer f.Close()
		files, fromName = f, f.Canonical()
	} else {
		var stopFrom func()
		src, stopFrom, err = o.from.config(ctx, stderr)
		if err != nil {
			return err
		}
		defer stopFrom()
		fromName = src.URL.String()
	}
	var dst *account.Config
	toName := toDir
	if toDir == "" {
		var stopTo func()
		dst, stopTo, err = o.to.config(ctx, stderr)
		if err != nil {
			return err
		}
		defer stopTo()
		toName = dst.URL.String()
	}
	srcKey := fromName
	if files != nil {
		srcKey = "files\x00" + files.Identity()
	}
	sum := sha256.Sum256([]byte("migrate v1\x00" + srcKey + "\x00" + toName))
	journal := filepath.Join(o.journalDir, hex.EncodeToString(sum[:8])+".jsonl")

	tty := !o.quiet && isTerminal(os.Stderr)
	start := time.Now()
	first := toName
	if dst != nil {
		first = dst.URL.Addr()
	} else if src != nil {
		first = src.URL.Addr()
	}
	st := newStatusLine(stderr, tty, "connecting to "+first)
	defer st.clear()
	if dst != nil {
		dst.Status = st.set
	}
	if src != nil {
		src.Status = st.set
	}
	var source engine.Source = files
	var imapSource *export.IMAPSource
	if files == nil {
		imapSource = &export.IMAPSource{Account: src, Include: o.include, Exclude: o.exclude, LabelMode: mode}
		defer imapSource.Close()
		source = imapSource
	}
	var sink engine.Sink
	var imapSink *imports.IMAPSink
	var archSink *export.ArchiveSink
	archClosed := false
	if toDir != "" {
		arch, err := openMigrateArchive(toDir, o.archiveFormat, o.sealing)
		if err != nil {
			return fmt.Errorf("--to %s: %w", toDir, err)
		}
		archSink = &export.ArchiveSink{Archive: arch, Source: source}
		defer func() {
			if !archClosed { // not closed below (an early return)
				archSink.Close()
				arch.Close()
			}
		}()
		sink = archSink
	} else {
		imapSink = &imports.IMAPSink{Account: dst, Map: m, Prefix: o.prefix, Verb: "migrate"}
		defer imapSink.Close()
		defer context.AfterFunc(ctx, imapSink.Abort)() // Ctrl-C: the target's connections close at once
		sink = imapSink
	}
	if o.maxPerDay > 0 && !o.dry {
		if imapSource != nil {
			if imapSource.Budget, err = account.NewDailyBudget(dailyDir(), src.URL.String(), "download", o.maxPerDay); err != nil {
				return err
			}
			defer imapSource.Budget.Save()
		}
		if imapSink != nil {
			if imapSink.Budget, err = account.NewDailyBudget(dailyDir(), dst.URL.String(), "upload", o.maxPerDay); err != nil {
				return err
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
		if imapSource != nil {
			imapSource.Log = eo.Log
		}
	}
	var keep *export.ArchiveSink
	if o.keepArchive != "" && !o.dry {
		arch, err := openMigrateArchive(o.keepArchive, o.archiveFormat, o.sealing)
		if err != nil {
			return fmt.Errorf("--keep-archive: %w", err)
		}
		defer arch.Close()
		keep = &export.ArchiveSink{Archive: arch, Source: source}
		eo.Keep = keep
	}
	var esum *engine.Summary
	if imapSink != nil {
		err = imapSink.Start(ctx)
	}
	if err == nil && imapSink != nil && imapSink.Bridge() && !o.connsSet {
		eo.Connections = 2 // as import: Proton paces what Bridge uploads
	}
	if err == nil {
		if files != nil {
			// labels are keywords unless skipped; Gmail is given the labels
			files.NoLabelKeywords = mode == engine.LabelsSkip
			files.GmailTarget = imapSink != nil && imapSink.Gmail()
		}
		esum, err = engine.Run(ctx, eo)
		if esum != nil {
			if imapSink != nil {
				esum.Failed = append(esum.Failed, imapSink.Unlabelled...)
			}
			if files != nil {
				esum.Failed = append(esum.Failed, files.EngineFailures()...)
			}
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
	if archSink != nil {
		// closed before the check, which reads the archive (and is
		// refused while a writer holds its lock)
		if kerr := archSink.Close(); err == nil && kerr != nil {
			err = fmt.Errorf("saving the archive: %w", kerr)
		}
		if kerr := archSink.Archive.Close(); err == nil && kerr != nil {
			err = fmt.Errorf("saving the archive: %w", kerr)
		}
		archClosed = true
	}
	var check *verify.Report
	if err == nil && esum != nil && !o.dry && (imapSink == nil || !imapSink.Gmail()) && (imapSource == nil || !imapSource.GmailAccount()) {
		// the closing check: verify's cheap form on the folders this run
		// looked at (the others are unchanged since a run that checked
		// them). A Gmail side keeps the engine's own check (a message
		// copied from Gmail stays in the folder it was first copied into;
		// a Gmail target holds copies in its label folders), as do
		// standard input (it cannot be read twice) and labels copied as
		// folders from local input, and an encrypted archive as the target
		// (reading its index needs the identity, which migrate has not).
		fromSide, toSide := verify.Side{Account: src}, verify.Side{Account: dst}
		ok := true
		if archSink != nil {
			toSide = verify.Side{Path: toDir}
			ok = !archSink.Archive.Encrypted()
		}
		if files != nil {
			fromSide = verify.Side{Path: files.Canonical(), Format: files.Format, Identities: files.Identities}
			ok = ok && files.Path != "-" && mode != engine.LabelsFolders
		}
		if ok {
			check, err = migrateCheck(ctx, fromSide, toSide, esum,
				verify.Options{Include: o.include, Exclude: o.exclude, Prefix: o.prefix, Map: m, Labels: mode, AllowExtra: true}, sel)
			if err != nil {
				err = fmt.Errorf("checking the target after the copy (the copy itself is done and recorded; run `mailmove verify` to check again): %w", err)
			}
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
			Verify  *verify.Report `json:"verify,omitempty"`
			Seconds float64        `json:"seconds"`
		}{header: newHeader("migrate"), From: fromName, To: toName, Summary: esum, Verify: check, Seconds: time.Since(start).Seconds()}
		if err != nil {
			v.Error = err.Error()
		}
		v.OK = err == nil && esum != nil && len(esum.Failed) == 0 && len(esum.Undecryptable) == 0 && len(esum.Check.Missing) == 0 && len(esum.Unstorable) == 0 && (check == nil || check.OK())
		writeJSON(stdout, v)
	}
	partial := false
	if esum != nil {
		if o.dry && !o.jsonOut {
			printMigratePlan(stdout, esum)
		}
		partial = printMigrateProblems(stderr, esum, check != nil)
	}
	if check != nil && printCheckProblems(stderr, check) {
		partial = true
	}
	if err != nil {
		if esum != nil && esum.Copied > 0 {
			fmt.Fprintf(stderr, "mailmove: %d messages were copied before the failure; they are recorded, and the next run goes on from there\n", esum.Copied)
		}
		return err
	}
	if tty && !o.jsonOut {
		if o.dry {
			n := 0
			for _, f := range esum.Folders {
				n += f.Copy
			}
			fmt.Fprintf(stderr, "%s -> %s: dry run: %d messages would be copied; nothing changed\n", fromName, toName, n)
		} else {
			fmt.Fprintf(stderr, "%s -> %s: %d messages copied (%s), %d already there, %d with new flags, %d deleted, in %s\n%s\n",
				fromName, toName, esum.Copied, humanBytes(esum.Bytes), esum.AlreadyThere, esum.FlagsUpdated, esum.Deleted,
				time.Since(start).Round(10*time.Millisecond), checkLine(esum, check))
		}
	}
	if partial {
		return errPartial
	}
	return nil
}

// isLocalInput reports whether --from names local input (a path, or "-")
// rather than an account URL.
func isLocalInput(v string) bool {
	return v == "-" || (v != "" && v != "demo" && !strings.Contains(v, "://"))
}

// localSource scans local input for migrate (--from PATH or -), as import
// reads it. A path that is not there, or an identity file that cannot be
// read, is a *usageError.
func localSource(ctx context.Context, path string, o *migrateOptions) (*imports.FilesSource, error) {
	if path != "-" {
		if _, err := os.Stat(path); err != nil {
			return nil, usagef("migrate", "--from: %v (give an account URL such as imaps://me@example.org@imap.example.org, or local input: a path or -)", err)
		}
	}
	ids, err := readIdentity(o.identity)
	if err != nil {
		return nil, usagef("migrate", "--identity: %v", err)
	}
	f := &imports.FilesSource{Path: path, Format: imports.Format(o.format), Identities: ids, LabelsAsFolders: o.mode == engine.LabelsFolders}
	if len(o.include) > 0 || len(o.exclude) > 0 {
		f.Only = func(folder string) bool { return export.Selected(folder, o.include, o.exclude) }
	}
	if err := f.Scan(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// migrateCheck is migrate's closing check: verify.Compare, cheap form
// (count and multiset of (Message-ID, size) per folder), through the same
// folder mapping, on the source folders this run looked at. A source
// message that arrived during the run (its UID at or above the UIDNEXT the
// run listed) is not counted missing: the next run copies it. With
// --since/--before (verify does not select by date) there is no such
// check, only the engine's own (every copied message's key at the target).
// Returns nil when there was nothing to check.
func migrateCheck(ctx context.Context, from, to verify.Side, esum *engine.Summary, vo verify.Options, sel engine.Select) (*verify.Report, error) {
	if sel != (engine.Select{}) {
		return nil, nil
	}
	vo.Only = []string{}
	next := map[string]uint32{}
	for _, f := range esum.Folders {
		if f.Target != "" && !f.Unchanged {
			vo.Only = append(vo.Only, f.Source)
			next[f.Source] = f.UIDNext
		}
	}
	if len(vo.Only) == 0 {
		return nil, nil
	}
	rep, err := verify.Compare(ctx, from, to, vo)
	if err != nil {
		return nil, err
	}
	// messages that arrived during the run are not missing yet
	for i := range rep.Folders {
		fr := &rep.Folders[i]
		kept := fr.Missing[:0]
		for _, e := range fr.Missing {
			if n := next[e.Folder]; n != 0 && e.UID >= n {
				rep.Missing--
				fr.Messages--
				rep.Messages--
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s UID %d arrived during the run: the next run copies it", e.Folder, e.UID))
				continue
			}
			kept = append(kept, e)
		}
		fr.Missing = kept
	}
	return rep, nil
}

// checkLine states the check at the end of migrate.
func checkLine(s *engine.Summary, rep *verify.Report) string {
	c := s.Check
	if len(c.Missing) > 0 || (rep != nil && !rep.OK()) {
		return "check: source messages are NOT all at the target (see above)"
	}
	if rep == nil && c.Folders == 0 {
		return fmt.Sprintf("check: nothing changed in the %d folders since the run that checked them", c.Unchanged)
	}
	var line string
	if rep != nil {
		line = fmt.Sprintf("check (verify, cheap form: count and Message-ID and size per folder): every one of the %d source messages of the %d folders this run looked at is at the target", rep.Messages, len(rep.Folders))
	} else {
		line = fmt.Sprintf("check: every one of the %d source messages of %d folders is at the target (Message-ID and size; --since/--before: the messages of the dates only)", c.Messages, c.Folders)
	}
	if c.Unchanged > 0 {
		line += fmt.Sprintf("; %d folders unchanged since the run that checked them", c.Unchanged)
	}
	return line
}

// printCheckProblems prints what the closing check found missing or could
// not read, by folder and Message-ID; it reports whether there was any.
func printCheckProblems(stderr io.Writer, rep *verify.Report) bool {
	bad := false
	for _, fr := range rep.Folders {
		for _, e := range fr.Missing {
			bad = true
			fmt.Fprintf(stderr, "mailmove: check: %s: missing at the target (%s): %s\n", fr.Folder, strings.Join(fr.From, ", "), describeEntry(e))
		}
	}
	for _, p := range rep.Problems {
		bad = true
		fmt.Fprintf(stderr, "mailmove: check: could not read %s folder %s: %s\n", p.Side, p.Folder, p.Error)
	}
	if bad {
		fmt.Fprintln(stderr, "mailmove: run migrate again to copy what is missing; `mailmove verify --from ... --to ...` compares the two in full")
	}
	return bad
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
// reports whether there was anything (exit 3). With verified, what the
// engine's own check found missing is left to the closing check's report.
func printMigrateProblems(stderr io.Writer, s *engine.Summary, verified bool) bool {
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
		if verified {
			continue // the closing check (verify) names them
		}
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
