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
	quiet := fs.Bool("quiet", false, "print nothing but errors, even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: mailmove migrate --from URL --to URL [flags]\n\nCopies every folder of one account into another: an export into a staging archive\n(kept, so that the next run moves only what is new), then an import of it.\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mailmove migrate: unexpected argument %q\n", fs.Arg(0))
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

	arch, err := archive.Open(*staging, archive.EML, false, "mailmove "+version)
	if err != nil {
		return errorExit(stderr, err)
	}
	eo := export.Options{Account: src, Archive: arch, Include: include, Exclude: exclude, Connections: *conns}
	var prog *progress
	if tty {
		prog = newProgress(stderr)
		eo.Progress = prog
	}
	esum, err := export.Run(ctx, eo)
	if prog != nil {
		prog.finish()
	}
	if cerr := arch.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errorExit(stderr, fmt.Errorf("reading %s: %w", src.URL, err))
	}
	for _, f := range esum.Failed {
		fmt.Fprintf(stderr, "mailmove: could not read %s UID %d: %s\n", f.Folder, f.UID, f.Error)
	}

	iopts := imports.Options{Account: dst, Source: *staging, Prefix: *prefix, Map: m, JournalDir: state, Connections: *conns}
	if tty {
		prog = newProgress(stderr)
		iopts.Progress = prog
	}
	isum, err := imports.Run(ctx, iopts)
	if prog != nil {
		prog.finish()
	}
	if err != nil {
		return errorExit(stderr, fmt.Errorf("writing to %s: %w", dst.URL, err))
	}
	for _, f := range isum.Failed {
		fmt.Fprintf(stderr, "mailmove: could not import %s: %s\n", f.Source, f.Error)
	}
	if tty {
		fmt.Fprintf(stderr, "%s -> %s: %d new messages read, %d appended, %d already there, in %s (staging archive %s)%s\n",
			src.URL, dst.URL, esum.Messages, isum.Appended, isum.Skipped, time.Since(start).Round(10*time.Millisecond), *staging, exportNotes(esum))
	}
	if len(esum.Failed) > 0 || len(isum.Failed) > 0 {
		return exitPartial
	}
	return exitOK
}
