package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// cmdExport exports an account into an archive: what is new since the
// last run, never twice. It changes nothing on the account.
func cmdExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseExport(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runExport(ctx, o, stdout, stderr)
}

// exportOptions are export's command line.
type exportOptions struct {
	from *accountFlags
	// out is the archive folder, format its format.
	out    string
	format archive.Format
	// lf: a new mbox archive has LF line endings (--mbox-line-endings).
	lf            bool
	layout        string
	statusHeaders bool
	sealing       archive.Sealing
	// maxPerDay is --max-bytes-per-day (0: no limit).
	maxPerDay int64
	// run is what export.Run is told, but for what runExport sets
	// (Account, Conn, Archive, Budget, Progress, Log).
	run   export.Options
	json  bool
	quiet bool
}

// parseExport reads export's command line and checks it.
func parseExport(args []string, stdout, stderr io.Writer) (*exportOptions, error) {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &exportOptions{from: addAccountFlags(fs, "from")}
	to := fs.String("to", "", "archive format: `mbox` (one mboxrd file per folder) or eml (one file per message)")
	fs.StringVar(&o.out, "out", "", "archive `folder` (created if missing; a re-run adds only what is new)")
	var include, exclude multiFlag
	fs.Var(&include, "folder", "export only folders matching this glob `pattern` (repeatable; \"/\" separates levels; a plain name includes its subfolders)")
	fs.Var(&exclude, "exclude", "skip folders matching this glob `pattern` (repeatable)")
	r := &o.run
	fs.IntVar(&r.Connections, "connections", 4, "use at most `n` IMAP connections")
	labels := fs.String("bridge-labels", "metadata", "Proton labels: `metadata` (recorded with each message) or folders (exported as Labels/... folders)")
	fs.BoolVar(&r.RefreshFlags, "refresh-flags", false, "also bring the flags of messages already archived up to date (one FLAGS fetch per folder and run)")
	lineEnd := fs.String("mbox-line-endings", "lf", "line endings of a new mbox archive: `lf` (as mail clients expect; the index still gives back the server's CRLF bytes exactly) or crlf (as fetched)")
	fs.StringVar(&o.layout, "mbox-layout", "", "how a new mbox archive lays out nested folders: `mailmove` (Parent/Child.mbox, the default) or thunderbird (Parent.sbd/Child, no extension, as Thunderbird's Local Folders)")
	fs.BoolVar(&o.statusHeaders, "mbox-status-headers", false, "add Status:, X-Status: and X-Keywords: lines with each message's flags to the mbox files, so that mutt, Dovecot and Python's mailbox show read, replied and flagged mail as such (the index records them: check, import and the SHA-256 still see the server's bytes)")
	gmailLabels := fs.String("gmail-labels", "metadata", "Gmail labels: `metadata` (each message once, in one folder, its labels and thread in the index) or folders (every label exported as a folder)")
	fs.Int64Var(&o.maxPerDay, "max-bytes-per-day", 0, "Gmail accounts: stop cleanly before `n` bytes of messages are downloaded from this account in one day (UTC), counting every run of the day (Gmail's daily IMAP cap is about 2 500 MB); 0: no limit")
	var encryptTo, encryptToFile multiFlag
	fs.Var(&encryptTo, "encrypt-to", "encrypt the archive to this age `recipient` (age1..., or an ssh-ed25519/ssh-rsa public key; repeatable): writing needs no private key, reading takes --identity")
	fs.Var(&encryptToFile, "encrypt-to-file", "encrypt the archive to the recipients in this `file` (one a line, as age -R; repeatable)")
	compress := fs.String("compress", "", "compress each message (or mbox message) with `zstd` before it is stored (and encrypted)")
	fs.BoolVar(&o.json, "json", false, "print a machine-readable summary on stdout")
	fs.BoolVar(&o.quiet, "quiet", false, "print nothing but errors, even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove export --from URL --to mbox|eml --out DIR [flags]\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usagef("export", "unexpected argument %q (passwords go in a file, a command or $MAILMOVE_FROM_PASSWORD)", pos[0])
	}
	switch *to {
	case "mbox":
		o.format = archive.Mbox
	case "eml":
		o.format = archive.EML
	case "":
		return nil, usagef("export", "--to is required: mbox or eml")
	default:
		return nil, usagef("export", "--to %s: want mbox or eml", *to)
	}
	if o.out == "" {
		return nil, usagef("export", "--out is required: the archive folder")
	}
	if *lineEnd != "crlf" && *lineEnd != "lf" {
		return nil, usagef("export", "--mbox-line-endings %s: want crlf or lf", *lineEnd)
	}
	o.lf = *lineEnd == "lf"
	switch o.layout {
	case "", archive.LayoutMailmove:
	case archive.LayoutThunderbird:
		if o.format != archive.Mbox {
			return nil, usagef("export", "--mbox-layout is for --to mbox")
		}
	default:
		return nil, usagef("export", "--mbox-layout %s: want mailmove or thunderbird", o.layout)
	}
	if o.statusHeaders && o.format != archive.Mbox {
		return nil, usagef("export", "--mbox-status-headers is for --to mbox (.eml files are always the server's bytes; the index holds their flags)")
	}
	if o.sealing, err = sealingFlags(encryptTo, encryptToFile, *compress); err != nil {
		return nil, usagef("export", "%v", err)
	}
	if *labels != "metadata" && *labels != "folders" {
		return nil, usagef("export", "--bridge-labels %s: want metadata or folders", *labels)
	}
	if *gmailLabels != "metadata" && *gmailLabels != "folders" {
		return nil, usagef("export", "--gmail-labels %s: want metadata or folders", *gmailLabels)
	}
	if o.maxPerDay < 0 {
		return nil, usagef("export", "--max-bytes-per-day must be 0 (no limit) or more")
	}
	if r.Connections < 1 {
		return nil, usagef("export", "--connections must be at least 1")
	}
	for _, p := range append(append([]string{}, include...), exclude...) {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, usagef("export", "bad pattern %q: %v", p, err)
		}
	}
	r.Include, r.Exclude = include, exclude
	r.Labels, r.GmailLabels = export.LabelMode(*labels), export.GmailLabelMode(*gmailLabels)
	return o, nil
}

// runExport exports the account into the archive and prints the summary;
// messages or folders that could not be exported (listed) are errPartial.
func runExport(ctx context.Context, o *exportOptions, stdout, stderr io.Writer) error {
	cfg, stop, err := o.from.config(ctx, stderr)
	if err != nil {
		return err
	}
	defer stop()

	tty := !o.quiet && isTerminal(os.Stderr)
	// Connect and log in before the archive folder is created: a typo in
	// the URL or the password leaves nothing behind.
	st := newStatusLine(stderr, tty, "connecting to "+cfg.URL.Addr())
	defer st.clear()
	cfg.Status = st.set
	failed := func(err error) error {
		st.clear()
		if o.json {
			writeJSON(stdout, struct {
				header
				*exportReport
			}{newHeader("export"), newExportReport(nil, err, o.out)})
		}
		return err
	}
	first, err := cfg.Dial(ctx)
	if err != nil {
		return failed(err)
	}
	st.set("listing folders and what is new")
	arch, err := archive.OpenSealed(o.out, o.format, o.lf, o.layout, "mailmove "+version, o.sealing)
	if err != nil {
		first.Close()
		return failed(err)
	}
	arch.StatusHeaders = o.statusHeaders
	var prog *progress
	if tty {
		prog = newProgress(stderr)
		prog.status = st
	}
	opts := o.run
	opts.Account, opts.Conn, opts.Archive = cfg, first, arch
	if o.maxPerDay > 0 {
		if opts.Budget, err = account.NewDailyBudget(dailyDir(), cfg.URL.String(), "download", o.maxPerDay); err != nil {
			first.Close()
			return failed(err)
		}
	}
	if prog != nil {
		opts.Progress = prog
	}
	if tty {
		opts.Log = func(format string, a ...any) { prog.log(fmt.Sprintf(format, a...)) }
	}
	sum, runErr := export.Run(ctx, opts)
	st.clear()
	if prog != nil {
		prog.finish()
	}
	if err := arch.Close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("saving the archive state: %w", err)
	}
	if o.json {
		writeJSON(stdout, struct {
			header
			*exportReport
		}{newHeader("export"), newExportReport(sum, runErr, o.out)})
	}
	if runErr != nil {
		if sum != nil && sum.Messages > 0 {
			fmt.Fprintf(stderr, "mailmove: %d messages were written before the failure; they are safe, and the next run goes on from there\n", sum.Messages)
		}
		return runErr
	}
	partial := printExportProblems(stderr, sum)
	if tty && !o.json {
		fmt.Fprintf(stderr, "%s: %d new messages (%s) from %d folders into %s in %s",
			cfg.URL, sum.Messages, humanBytes(sum.Bytes), sum.Folders, o.out, sum.Elapsed.Round(10*time.Millisecond))
		fmt.Fprint(stderr, exportNotes(sum))
		if sum.FlagsUpdated > 0 {
			fmt.Fprintf(stderr, "; flags changed on %d", sum.FlagsUpdated)
		}
		fmt.Fprintln(stderr)
	}
	if partial {
		return errPartial
	}
	return nil
}

// exportNotes explains an export's counts in words: Bridge's messages in
// no folder, messages of excluded folders, messages found again after a
// renumbering. Export and migrate print it after their summary line.
func exportNotes(sum *export.Summary) string {
	var b strings.Builder
	if sum.Gmail {
		b.WriteString("; Gmail: each message once, in one folder, its labels and thread in the index")
	}
	if sum.AllMailOnly > 0 {
		fmt.Fprintf(&b, "; %d of them are in no folder on Proton Mail Bridge and went into All Mail", sum.AllMailOnly)
	}
	if sum.Excluded > 0 && sum.Gmail {
		fmt.Fprintf(&b, "; %d messages of excluded folders left out", sum.Excluded)
	} else if sum.Excluded > 0 {
		fmt.Fprintf(&b, "; %d messages of excluded folders left out of All Mail", sum.Excluded)
	}
	if sum.Duplicates > 0 {
		fmt.Fprintf(&b, "; %d found already archived after the server renumbered a folder", sum.Duplicates)
	}
	return b.String()
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
	// status, if set, is the status line shown until the work is planned.
	status *statusLine

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
	p.status.clear()
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
	p.status.clear()
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

// dailyDir is where --max-bytes-per-day keeps each account's count of the
// day: $XDG_STATE_HOME/mailmove/daily, else ~/.local/state/mailmove/daily.
func dailyDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "mailmove", "daily")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "mailmove", "daily")
	}
	return filepath.Join(os.TempDir(), "mailmove-daily")
}

// sealingFlags turns export's --encrypt-to, --encrypt-to-file and
// --compress into an archive.Sealing.
func sealingFlags(to, files []string, compress string) (archive.Sealing, error) {
	var s archive.Sealing
	switch compress {
	case "", archive.CompressionZstd:
		s.Compress = compress
	default:
		return s, fmt.Errorf("--compress %s: the one there is is zstd", compress)
	}
	for _, r := range to {
		rc, err := archive.ParseRecipient(r)
		if err != nil {
			return s, fmt.Errorf("--encrypt-to %.20q: %v", r, err)
		}
		s.Recipients = append(s.Recipients, rc)
	}
	for _, f := range files {
		rs, err := archive.ReadRecipientsFile(f)
		if err != nil {
			return s, fmt.Errorf("--encrypt-to-file: %v", err)
		}
		s.Recipients = append(s.Recipients, rs...)
	}
	return s, nil
}

// identityFlag adds --identity to a command that reads archives.
func identityFlag(fs *flag.FlagSet) *string {
	return fs.String("identity", "", "decrypt an encrypted archive with the age identity `file` (as age -d -i FILE; an unencrypted SSH private key works too)")
}

// readIdentity reads --identity's file, if given.
func readIdentity(path string) ([]age.Identity, error) {
	if path == "" {
		return nil, nil
	}
	return archive.ReadIdentityFile(path)
}
