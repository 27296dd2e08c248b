package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
)

// TestExitCodeExportParse: export's command-line mistakes are usage errors
// that exitCode prints on one line, exit 2; a good command line fills the
// options struct; --help is exit 0 with the usage on stdout.
func TestExitCodeExportParse(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"extra"}, "mailmove export: unexpected argument \"extra\" (passwords go in a file, a command or $MAILMOVE_FROM_PASSWORD)\n"},
		{[]string{"--from", "demo"}, "mailmove export: --to is required: mbox or eml\n"},
		{[]string{"--to", "xx"}, "mailmove export: --to xx: want mbox or eml\n"},
		{[]string{"--to", "mbox"}, "mailmove export: --out is required: the archive folder\n"},
		{[]string{"--to", "eml", "--out", "a", "--mbox-layout", "thunderbird"}, "mailmove export: --mbox-layout is for --to mbox\n"},
		{[]string{"--to", "mbox", "--out", "a", "--compress", "gz"}, "mailmove export: --compress gz: the one there is is zstd\n"},
		{[]string{"--to", "mbox", "--out", "a", "--connections", "0"}, "mailmove export: --connections must be at least 1\n"},
		{[]string{"--to", "mbox", "--out", "a", "--folder", "["}, "mailmove export: bad pattern \"[\": syntax error in pattern\n"},
	} {
		var stdout, stderr bytes.Buffer
		o, err := parseExport(c.args, &stdout, &stderr)
		var u *usageError
		if o != nil || !errors.As(err, &u) {
			t.Fatalf("%q: got %v, %v; want a usage error", c.args, o, err)
		}
		if code := exitCode(&stderr, err); code != exitUsage || stderr.String() != c.want || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2, %q", c.args, code, stderr.String(), stdout.String(), c.want)
		}
	}

	var stdout, stderr bytes.Buffer
	o, err := parseExport([]string{"--from", "demo", "--to", "mbox", "--out", "a", "--mbox-line-endings", "crlf", "--connections", "2", "--folder", "INBOX", "--bridge-labels", "folders", "--max-bytes-per-day", "9"}, &stdout, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if o.format != archive.Mbox || o.out != "a" || o.lf || o.maxPerDay != 9 || *o.from.url != "demo" ||
		o.run.Connections != 2 || o.run.Labels != export.LabelsAsFolders || len(o.run.Include) != 1 || o.run.Include[0] != "INBOX" {
		t.Errorf("options: %+v", o)
	}

	stdout.Reset()
	stderr.Reset()
	_, err = parseExport([]string{"--help"}, &stdout, &stderr)
	if code := exitCode(&stderr, err); code != exitOK || !strings.HasPrefix(stdout.String(), "Usage: mailmove export") || stderr.Len() != 0 {
		t.Errorf("--help: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestExitCodeExportCheckFolders: check without an archive prints its usage
// (errUsageShown: exitCode adds nothing), folders with an argument is a
// one-line usage error, and check of a folder that is no archive is exit 1
// with the error said once.
func TestExitCodeExportCheckFolders(t *testing.T) {
	var stdout, stderr bytes.Buffer
	_, err := parseCheck(nil, &stdout, &stderr)
	shown := stderr.String()
	if code := exitCode(&stderr, err); code != exitUsage || !errors.Is(err, errUsageShown) || !strings.HasPrefix(shown, "Usage: mailmove check") || stderr.String() != shown {
		t.Errorf("check without an archive: exit %d, %v, stderr %q", code, err, stderr.String())
	}

	stderr.Reset()
	_, err = parseFolders([]string{"x"}, &stdout, &stderr)
	if code := exitCode(&stderr, err); code != exitUsage || stderr.String() != "mailmove folders: unexpected argument \"x\"\n" {
		t.Errorf("folders x: exit %d, stderr %q", code, stderr.String())
	}

	stderr.Reset()
	dir := t.TempDir()
	err = cmdCheck(t.Context(), []string{dir}, &stdout, &stderr)
	if code := exitCode(&stderr, err); code != exitFailed || strings.Count(stderr.String(), "is not a mailmove archive") != 1 || stdout.Len() != 0 {
		t.Errorf("check of an empty folder: exit %d, stderr %q, stdout %q", code, stderr.String(), stdout.String())
	}
}

// TestUsageMistakesFoldersSchedule: folders refuses a label mode export
// would refuse; schedule --at wants HH:MM exactly (3:1x was read as 03:01).
func TestUsageMistakesFoldersSchedule(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
		run  func([]string, *bytes.Buffer, *bytes.Buffer) error
	}{
		{[]string{"--from", "demo", "--bridge-labels", "tags"}, "mailmove folders: --bridge-labels tags: want metadata or folders\n",
			func(a []string, o, e *bytes.Buffer) error { _, err := parseFolders(a, o, e); return err }},
		{[]string{"--from", "demo", "--gmail-labels", "x"}, "mailmove folders: --gmail-labels x: want metadata or folders\n",
			func(a []string, o, e *bytes.Buffer) error { _, err := parseFolders(a, o, e); return err }},
		{[]string{"--cron", "--at", "3:1x"}, "mailmove schedule: --at \"3:1x\": want HH:MM, e.g. 03:17\n",
			func(a []string, o, e *bytes.Buffer) error { _, err := parseSchedule(a, o, e); return err }},
		{[]string{"--cron", "--at", "24:00"}, "mailmove schedule: --at \"24:00\": want HH:MM, e.g. 03:17\n",
			func(a []string, o, e *bytes.Buffer) error { _, err := parseSchedule(a, o, e); return err }},
	} {
		var stdout, stderr bytes.Buffer
		err := c.run(c.args, &stdout, &stderr)
		if code := exitCode(&stderr, err); code != exitUsage || stderr.String() != c.want {
			t.Errorf("%q: exit %d, stderr %q; want 2, %q", c.args, code, stderr.String(), c.want)
		}
	}
}
