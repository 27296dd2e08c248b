package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := addAccountFlags(fs, "from")
	to := fs.String("to", "", "archive format: `mbox` (one mboxrd file per folder) or eml (one file per message)")
	out := fs.String("out", "", "archive `folder` (created if missing; a re-run adds only what is new)")
	var include, exclude multiFlag
	fs.Var(&include, "folder", "export only folders matching this glob `pattern` (repeatable; \"/\" separates levels; a plain name includes its subfolders)")
	fs.Var(&exclude, "exclude", "skip folders matching this glob `pattern` (repeatable)")
	conns := fs.Int("connections", 4, "use at most `n` IMAP connections")
	labels := fs.String("bridge-labels", "metadata", "Proton labels: `metadata` (recorded with each message) or folders (exported as Labels/... folders)")
	refresh := fs.Bool("refresh-flags", false, "also bring the flags of messages already archived up to date (one FLAGS fetch per folder and run)")
	lineEnd := fs.String("mbox-line-endings", "crlf", "line endings in mbox files: `crlf` (as fetched) or lf")
	jsonOut := fs.Bool("json", false, "print a machine-readable summary on stdout")
	quiet := fs.Bool("quiet", false, "print nothing but errors, even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: mailmove export --from URL --to mbox|eml --out DIR [flags]\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mailmove export: unexpected argument %q (passwords go in a file, a command or $MAILMOVE_FROM_PASSWORD)\n", fs.Arg(0))
		return exitUsage
	}
	var format archive.Format
	switch *to {
	case "mbox":
		format = archive.Mbox
	case "eml":
		format = archive.EML
	case "":
		fmt.Fprintln(stderr, "mailmove export: --to is required: mbox or eml")
		return exitUsage
	default:
		fmt.Fprintf(stderr, "mailmove export: --to %s: want mbox or eml\n", *to)
		return exitUsage
	}
	if *out == "" {
		fmt.Fprintln(stderr, "mailmove export: --out is required: the archive folder")
		return exitUsage
	}
	if *lineEnd != "crlf" && *lineEnd != "lf" {
		fmt.Fprintf(stderr, "mailmove export: --mbox-line-endings %s: want crlf or lf\n", *lineEnd)
		return exitUsage
	}
	if *labels != "metadata" && *labels != "folders" {
		fmt.Fprintf(stderr, "mailmove export: --bridge-labels %s: want metadata or folders\n", *labels)
		return exitUsage
	}
	if *conns < 1 {
		fmt.Fprintln(stderr, "mailmove export: --connections must be at least 1")
		return exitUsage
	}
	for _, p := range append(append([]string{}, include...), exclude...) {
		if _, err := filepath.Match(p, ""); err != nil {
			fmt.Fprintf(stderr, "mailmove export: bad pattern %q: %v\n", p, err)
			return exitUsage
		}
	}
	cfg, stop, err := from.config(ctx, stderr)
	if err != nil {
		return errorExit(stderr, err)
	}
	defer stop()

	arch, err := archive.Open(*out, format, *lineEnd == "lf", "mailmove "+version)
	if err != nil {
		return errorExit(stderr, err)
	}
	tty := !*quiet && isTerminal(os.Stderr)
	var prog *progress
	if tty {
		prog = newProgress(stderr)
	}
	opts := export.Options{
		Account:      cfg,
		Archive:      arch,
		Include:      include,
		Exclude:      exclude,
		Connections:  *conns,
		Labels:       export.LabelMode(*labels),
		RefreshFlags: *refresh,
	}
	if prog != nil {
		opts.Progress = prog
	}
	if tty {
		opts.Log = func(format string, a ...any) { prog.log(fmt.Sprintf(format, a...)) }
	}
	sum, runErr := export.Run(ctx, opts)
	if prog != nil {
		prog.finish()
	}
	if err := arch.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("saving the archive state: %w", err)
	}
	if *jsonOut {
		writeJSONSummary(stdout, sum, runErr, *out)
	}
	if runErr != nil {
		if sum != nil && sum.Messages > 0 {
			fmt.Fprintf(stderr, "mailmove: %d messages were written before the failure; they are safe, and the next run goes on from there\n", sum.Messages)
		}
		return errorExit(stderr, runErr)
	}
	if len(sum.Failed) > 0 {
		fmt.Fprintf(stderr, "mailmove: %d messages could not be exported (the next run tries them again):\n", len(sum.Failed))
		for _, f := range sum.Failed {
			if f.UID == 0 {
				fmt.Fprintf(stderr, "  folder %s: %s\n", f.Folder, f.Error)
				continue
			}
			fmt.Fprintf(stderr, "  %s UID %d: %s\n", f.Folder, f.UID, f.Error)
		}
	}
	for _, f := range sum.Undecryptable {
		fmt.Fprintf(stderr, "mailmove: %s UID %d: %s\n", f.Folder, f.UID, f.Error)
	}
	if sum.BridgeSyncing {
		fmt.Fprintln(stderr, "mailmove: Proton Mail Bridge's All Mail changed size during the run: Bridge may still be syncing. Wait until Bridge says the sync has finished, then run the same command again to get the rest")
	}
	if tty && !*jsonOut {
		fmt.Fprintf(stderr, "%s: %d new messages (%s) from %d folders into %s in %s",
			cfg.URL, sum.Messages, humanBytes(sum.Bytes), sum.Folders, *out, sum.Elapsed.Round(10*time.Millisecond))
		fmt.Fprint(stderr, exportNotes(sum))
		if sum.FlagsUpdated > 0 {
			fmt.Fprintf(stderr, "; flags changed on %d", sum.FlagsUpdated)
		}
		fmt.Fprintln(stderr)
	}
	if len(sum.Failed) > 0 || len(sum.Undecryptable) > 0 {
		return exitPartial
	}
	return exitOK
}

// exportNotes explains an export's counts in words: Bridge's messages in
// no folder, messages of excluded folders, messages found again after a
// renumbering. Export and migrate print it after their summary line.
func exportNotes(sum *export.Summary) string {
	var b strings.Builder
	if sum.AllMailOnly > 0 {
		fmt.Fprintf(&b, "; %d of them are in no folder on Proton Mail Bridge and went into All Mail", sum.AllMailOnly)
	}
	if sum.Excluded > 0 {
		fmt.Fprintf(&b, "; %d messages of excluded folders left out of All Mail", sum.Excluded)
	}
	if sum.Duplicates > 0 {
		fmt.Fprintf(&b, "; %d found already archived after the server renumbered a folder", sum.Duplicates)
	}
	return b.String()
}

func writeJSONSummary(w io.Writer, sum *export.Summary, runErr error, out string) {
	type js struct {
		OK         bool             `json:"ok"`
		Error      string           `json:"error,omitempty"`
		Archive    string           `json:"archive"`
		Folders    int              `json:"folders"`
		Messages   int              `json:"messages"`
		Bytes      int64            `json:"bytes"`
		Duplicates int              `json:"duplicates"`
		Flags      int              `json:"flags_updated"`
		Failed     []export.Failure `json:"failed"`
		Undecrypt  []export.Failure `json:"undecryptable,omitempty"`
		Bridge     bool             `json:"bridge"`
		AllMail    int              `json:"all_mail_only,omitempty"`
		Excluded   int              `json:"excluded,omitempty"`
		Syncing    bool             `json:"bridge_syncing,omitempty"`
		Seconds    float64          `json:"seconds"`
	}
	v := js{Archive: out, Failed: []export.Failure{}}
	if sum != nil {
		v.Folders, v.Messages, v.Bytes, v.Duplicates, v.Bridge = sum.Folders, sum.Messages, sum.Bytes, sum.Duplicates, sum.Bridge
		v.Flags = sum.FlagsUpdated
		v.AllMail, v.Excluded = sum.AllMailOnly, sum.Excluded
		v.Seconds = sum.Elapsed.Seconds()
		v.Undecrypt, v.Syncing = sum.Undecryptable, sum.BridgeSyncing
		if sum.Failed != nil {
			v.Failed = sum.Failed
		}
	}
	if runErr != nil {
		v.Error = runErr.Error()
	}
	v.OK = runErr == nil && len(v.Failed) == 0 && len(v.Undecrypt) == 0
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// progress shows a bar of bytes with the message count in its description.
type progress struct {
	mu    sync.Mutex
	bar   *progressbar.ProgressBar
	w     io.Writer
	total int
	n     int
	bytes int64
	max   int64
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w}
}

func (p *progress) Planned(messages int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = messages
	p.max = bytes
	if bytes <= 0 {
		bytes = -1
	}
	p.bar = progressbar.NewOptions64(bytes,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(fmt.Sprintf("0/%d messages", messages)),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(24),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionUseANSICodes(true),
	)
}

func (p *progress) Message(folder string, size int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil {
		return
	}
	p.n++
	p.bytes += size
	if p.max > 0 && p.bytes > p.max {
		p.max = p.bytes
		p.bar.ChangeMax64(p.max)
	}
	p.bar.Describe(fmt.Sprintf("%s %d/%d", shorten(folder, 24), p.n, p.total))
	p.bar.Add64(size)
}

func (p *progress) log(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintln(p.w, "mailmove:", s)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
	}
}

func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}
