package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/imports"
	"github.com/mailmove/mailmove/verify"
)

// cmdVerify compares two accounts or archives (any pair) folder by folder,
// through the folder mapping of import and migrate, and says what is
// missing, extra or different. It changes nothing on either side.
func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseVerify(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runVerify(ctx, o, stdout, stderr)
}

// verifyOptions are verify's command line.
type verifyOptions struct {
	from, to             *accountFlags
	fromFormat, toFormat string
	identity             string
	// compare is what Compare is told (Log is set by runVerify).
	compare verify.Options
	json    bool
	quiet   bool
}

// parseVerify reads verify's command line and checks it.
func parseVerify(args []string, stdout, stderr io.Writer) (*verifyOptions, error) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &verifyOptions{from: addAccountFlags(fs, "from"), to: addAccountFlags(fs, "to")}
	fs.StringVar(&o.fromFormat, "from-format", "", "force the format of a local --from: mailmove, mbox, eml, maildir, takeout (default: detected)")
	fs.StringVar(&o.toFormat, "to-format", "", "force the format of a local --to (as --from-format)")
	var include, exclude multiFlag
	fs.Var(&include, "folder", "compare only source folders matching this glob `pattern` (repeatable)")
	fs.Var(&exclude, "exclude", "skip source folders matching this glob `pattern` (repeatable)")
	c := &o.compare
	fs.StringVar(&c.Prefix, "prefix", "", "the source folders are under this target `folder` (as import --prefix)")
	fs.StringVar(&c.Into, "into", "", "every source folder is this one target `folder` (the copy was made with import --folder)")
	var maps multiFlag
	fs.Var(&maps, "map", "`SRC=DST`: source folder SRC is target folder DST (repeatable, as import --map)")
	fs.BoolVar(&c.Deep, "deep", false, "compare the SHA-256 of every message (CRLF line endings; X-Pm-* header fields left out), not only Message-ID and size")
	fs.BoolVar(&c.Flags, "flags", false, "compare flags and keywords too")
	fs.BoolVar(&c.AllowExtra, "allow-extra", false, "list messages found only on the target, but do not count them as a difference (a backup keeps what the server deleted)")
	labels := fs.String("labels", "keywords", "what the copy did with Proton and Gmail labels (as migrate --labels): `keywords` of the copies (expected among their flags with --flags), folders (Bridge's Labels/... are source folders), or skip")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout")
	fs.BoolVar(&o.quiet, "quiet", false, "print nothing when everything is there")
	identity := identityFlag(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mailmove verify --from A --to B [flags]

A and B are each an account URL (imaps://, imap://, bridge://) or the path of a mailmove
archive (or of an mbox, a folder of .eml files, a Maildir). Compares them folder by folder,
through the folder mapping of import and migrate: counts and (Message-ID, size) of every
message; with --deep the SHA-256 of every message; with --flags flags and keywords. Lists
what is missing on B, extra on B or different. Changes nothing on either side.
Exit codes: 0 everything is there, 4 differences found, 3 some messages could not be read,
1 failed, 2 usage error.

`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usagef("verify", "unexpected argument %q", pos[0])
	}
	m, ok := parseMaps(maps, stderr)
	if !ok {
		return nil, errUsageShown
	}
	c.Include, c.Exclude, c.Map = include, exclude, m
	switch c.Labels = engine.LabelMode(*labels); c.Labels {
	case engine.LabelsKeywords, engine.LabelsFolders, engine.LabelsSkip:
	default:
		return nil, usagef("verify", "--labels %q: choose keywords, folders or skip", *labels)
	}
	o.identity = *identity
	for _, af := range []*accountFlags{o.from, o.to} {
		if *af.url == "" {
			return nil, usagef("verify", "--%s is required: an account URL or the path of an archive", af.prefix)
		}
	}
	return o, nil
}

// runVerify compares the two sides and prints the report; differences
// are errDiffers, messages that could not be read errPartial.
func runVerify(ctx context.Context, o *verifyOptions, stdout, stderr io.Writer) error {
	ids, err := readIdentity(o.identity)
	if err != nil {
		return err
	}
	var sides [2]verify.Side
	for i, x := range []struct {
		af     *accountFlags
		format string
	}{{o.from, o.fromFormat}, {o.to, o.toFormat}} {
		if !isAccountURL(*x.af.url) {
			sides[i] = verify.Side{Path: *x.af.url, Format: imports.Format(x.format), Identities: ids}
			continue
		}
		cfg, stop, err := x.af.config(ctx, stderr)
		if err != nil {
			failJSON(stdout, o.json, "verify", err)
			return err
		}
		defer stop()
		sides[i] = verify.Side{Account: cfg}
	}
	tty := !o.quiet && !o.json && isTerminal(os.Stderr)
	st := newStatusLine(stderr, tty, "connecting")
	defer st.clear()
	vo := o.compare
	if tty {
		vo.Log = func(format string, a ...any) { st.set(fmt.Sprintf(format, a...)) }
		for _, s := range sides {
			if s.Account != nil {
				s.Account.Status = st.set
			}
		}
	}
	rep, err := verify.Compare(ctx, sides[0], sides[1], vo)
	st.clear()
	if err != nil {
		failJSON(stdout, o.json, "verify", err)
		return err
	}
	if o.json {
		writeJSON(stdout, struct {
			header
			OK bool `json:"ok"`
			*verify.Report
			Seconds float64 `json:"seconds"`
		}{newHeader("verify"), rep.OK(), rep, rep.Elapsed.Seconds()})
	} else {
		printVerify(stdout, stderr, rep, o.quiet)
	}
	switch {
	case rep.Differs():
		return errDiffers
	case len(rep.Problems) > 0:
		return errPartial
	}
	return nil
}

// isAccountURL tells an account URL from a path.
func isAccountURL(s string) bool {
	return s == "demo" || strings.Contains(s, "://")
}

// printVerify prints what differs, folder by folder, and a summary line.
func printVerify(stdout, stderr io.Writer, r *verify.Report, quiet bool) {
	for _, p := range r.Problems {
		where := p.Folder
		if p.UID != 0 {
			where = fmt.Sprintf("%s UID %d", p.Folder, p.UID)
		}
		if p.Source != "" {
			where = p.Source
		}
		fmt.Fprintf(stderr, "mailmove: %s (%s): not compared: %s\n", where, p.Side, p.Error)
	}
	for _, p := range r.Skipped {
		fmt.Fprintf(stderr, "mailmove: %s: not compared: %s\n", p.Folder, p.Error)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(stderr, "mailmove: note: %s\n", n)
	}
	for _, f := range r.Folders {
		if len(f.Missing)+len(f.Extra)+len(f.Different) == 0 {
			continue
		}
		exists := ""
		if !f.Exists {
			exists = " (no such folder on the target)"
		}
		fmt.Fprintf(stdout, "%s <- %s: %d messages, %d on the target%s\n", f.Folder, strings.Join(f.From, ", "), f.Messages, f.TargetMessages, exists)
		for _, e := range f.Missing {
			fmt.Fprintf(stdout, "  missing: %s\n", describeEntry(e))
		}
		for _, e := range f.Extra {
			fmt.Fprintf(stdout, "  extra: %s\n", describeEntry(e))
		}
		for _, d := range f.Different {
			if d.What == "flags" {
				fmt.Fprintf(stdout, "  different flags: %s: %s -> %s", describeEntry(d.From), flagList(d.From.Flags), flagList(d.To.Flags))
				if !slices.Equal(d.From.Labels, d.To.Labels) {
					fmt.Fprintf(stdout, "; labels %s -> %s", flagList(d.From.Labels), flagList(d.To.Labels))
				}
				fmt.Fprintln(stdout)
				continue
			}
			fmt.Fprintf(stdout, "  different content: %s; target: %s\n", describeEntry(d.From), where(d.To))
		}
	}
	if !quiet || !r.OK() {
		fmt.Fprintln(stdout, r.Summary())
	}
}

func describeEntry(e verify.Entry) string {
	id := "<" + e.MessageID + ">"
	if e.MessageID == "" {
		id = "(no Message-ID)"
	}
	s := fmt.Sprintf("%s %d bytes", id, e.Size)
	if !e.Date.IsZero() {
		s += " " + e.Date.Format("2006-01-02 15:04")
	}
	if e.Subject != "" {
		s += fmt.Sprintf(" %q", e.Subject)
	}
	return s + " (" + where(e) + ")"
}

func where(e verify.Entry) string {
	if e.UID != 0 {
		return fmt.Sprintf("%s UID %d", e.Folder, e.UID)
	}
	return e.Source
}

func flagList(f []string) string {
	if len(f) == 0 {
		return "(none)"
	}
	return strings.Join(f, " ")
}
