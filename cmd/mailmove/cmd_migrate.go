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
	"time"

	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/imports"
)

// cmdMigrate moves mail from one account to another: an export into a
// staging archive, then an import of it. Both halves are incremental, so a
// migration can be run again until the day the old account closes.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := addAccountFlags(fs, "from")
	to := addAccountFlags(fs, "to")
	var include, exclude multiFlag
	fs.Var(&include, "folder", "migrate only folders matching this glob `pattern` (repeatable)")
	fs.Var(&exclude, "exclude", "skip folders matching this glob `pattern` (repeatable)")
	staging := fs.String("staging", "", "the staging archive (`dir`); default: one per pair of accounts under the state folder")
	prefix := fs.String("prefix", "", "put the folders under this target `folder`")
	var maps multiFlag
	fs.Var(&maps, "map", "`SRC=DST`: source folder SRC goes to target folder DST (repeatable)")
	conns := fs.Int("connections", 4, "use at most `n` IMAP connections on each side")
	dry := fs.Bool("dry-run", false, "bring the staging archive up to date (this reads the source and changes nothing there), then show what the import would create and append; append nothing")
	jsonOut := fs.Bool("json", false, "print a machine-readable summary on stdout")
	quiet := fs.Bool("quiet", false, "print nothing but errors, even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove migrate --from URL --to URL [flags]\n\nCopies every folder of one account into another: an export into a staging archive\n(kept, so that the next run moves only what is new), then an import of it.\n\n")
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
	m, ok := parseMaps(maps, stderr)
	if !ok {
		return exitUsage
	}
	src, stopFrom, err := from.config(ctx, stderr)
	if err != nil {
		return errorExit(stderr, err)
	}
	defer stopFrom()
	dst, stopTo, err := to.config(ctx, stderr)
	if err != nil {
		return errorExit(stderr, err)
	}
	defer stopTo()
	state := defaultJournalDir()
	if *staging == "" {
		sum := sha256.Sum256([]byte(src.URL.String() + "\x00" + dst.URL.String()))
		*staging = filepath.Join(filepath.Dir(state), "migrate", hex.EncodeToString(sum[:8]))
		if err := os.MkdirAll(filepath.Dir(*staging), 0o700); err != nil {
			return errorExit(stderr, err)
		}
	}
	tty := !*quiet && isTerminal(os.Stderr)
	start := time.Now()
	report := func(esum *export.Summary, eerr error, isum *imports.Summary, ierr error) {
		if !*jsonOut {
			return
		}
		v := struct {
			header
			OK      bool          `json:"ok"`
			Error   string        `json:"error,omitempty"`
			From    string        `json:"from"`
			To      string        `json:"to"`
			Staging string        `json:"staging"`
			DryRun  bool          `json:"dry_run"`
			Export  *exportReport `json:"export"`
			Import  *importReport `json:"import"`
			Seconds float64       `json:"seconds"`
		}{header: newHeader("migrate"), From: src.URL.String(), To: dst.URL.String(), Staging: *staging, DryRun: *dry,
			Export: newExportReport(esum, eerr, *staging), Seconds: time.Since(start).Seconds()}
		if isum != nil || ierr != nil {
			v.Import = newImportReport(isum, ierr)
		}
		switch {
		case eerr != nil:
			v.Error = "reading " + src.URL.String() + ": " + eerr.Error()
		case ierr != nil:
			v.Error = "writing to " + dst.URL.String() + ": " + ierr.Error()
		}
		v.OK = v.Error == "" && v.Export.OK && v.Import != nil && v.Import.OK
		writeJSON(stdout, v)
	}

	// The export half: the source into the staging archive.
	st := newStatusLine(stderr, tty, "connecting to "+src.URL.Addr())
	defer st.clear()
	src.Status, dst.Status = st.set, st.set
	arch, err := archive.Open(*staging, archive.EML, false, "mailmove "+version)
	if err != nil {
		st.clear()
		report(nil, err, nil, nil)
		return errorExit(stderr, err)
	}
	eo := export.Options{Account: src, Archive: arch, Include: include, Exclude: exclude, Connections: *conns}
	var prog *progress
	if tty {
		prog = newProgress(stderr)
		prog.status = st
		eo.Progress = prog
		eo.Log = func(format string, a ...any) { prog.log(fmt.Sprintf(format, a...)) }
	}
	esum, err := export.Run(ctx, eo)
	st.clear()
	if prog != nil {
		prog.finish()
	}
	if cerr := arch.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("saving the staging archive's state: %w", cerr)
	}
	if err != nil {
		report(esum, err, nil, nil)
		if esum != nil && esum.Messages > 0 {
			fmt.Fprintf(stderr, "mailmove: %d messages were read into the staging archive before the failure; they are safe, and the next run goes on from there\n", esum.Messages)
		}
		return errorExit(stderr, fmt.Errorf("reading %s: %w", src.URL, err))
	}
	partial := printExportProblems(stderr, esum)

	// The import half: the staging archive into the target.
	iopts := imports.Options{Account: dst, Source: *staging, Prefix: *prefix, Map: m, JournalDir: state, Connections: *conns, DryRun: *dry}
	prog = nil
	st = newStatusLine(stderr, tty, "connecting to "+dst.URL.Addr())
	defer st.clear()
	dst.Status = st.set
	if tty && !*dry {
		prog = newProgress(stderr)
		prog.status = st
		iopts.Progress = prog
		iopts.Log = func(format string, a ...any) { prog.log(fmt.Sprintf(format, a...)) }
	}
	isum, err := imports.Run(ctx, iopts)
	st.clear()
	if prog != nil {
		prog.finish()
	}
	report(esum, nil, isum, err)
	if *dry && !*jsonOut && isum != nil {
		printImportPlan(stdout, isum)
	}
	if printImportProblems(stderr, isum) {
		partial = true
	}
	if err != nil {
		return errorExit(stderr, fmt.Errorf("writing to %s: %w", dst.URL, err))
	}
	if tty && !*jsonOut {
		if *dry {
			fmt.Fprintf(stderr, "%s -> %s: %d new messages read into the staging archive %s; dry run: nothing appended\n",
				src.URL, dst.URL, esum.Messages, *staging)
		} else {
			fmt.Fprintf(stderr, "%s -> %s: %d new messages read, %d appended, %d already there, in %s (staging archive %s)%s\n",
				src.URL, dst.URL, esum.Messages, isum.Appended, isum.Skipped, time.Since(start).Round(10*time.Millisecond), *staging, exportNotes(esum))
		}
	}
	if partial {
		return exitPartial
	}
	return exitOK
}
