package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/imports"
)

// jsonSchema is the version of the --json output of every command
// (documented in the README, "--json output"). It changes only when a field
// changes meaning or goes away; new fields may be added within a version.
const jsonSchema = 1

// header starts every command's --json object.
type header struct {
	Schema  int    `json:"schema"`
	Command string `json:"command"`
}

func newHeader(command string) header { return header{Schema: jsonSchema, Command: command} }

// exportReport is the --json summary of an export (and of the export half
// of a migrate).
type exportReport struct {
	OK         bool             `json:"ok"`
	Error      string           `json:"error,omitempty"`
	Archive    string           `json:"archive"`
	Folders    int              `json:"folders"`
	Messages   int              `json:"messages"`
	Bytes      int64            `json:"bytes"`
	Duplicates int              `json:"duplicates"`
	Flags      int              `json:"flags_updated"`
	Failed     []export.Failure `json:"failed"`
	Undecrypt  []export.Failure `json:"undecryptable"`
	Bridge     bool             `json:"bridge"`
	AllMail    int              `json:"all_mail_only"`
	Excluded   int              `json:"excluded"`
	Syncing    bool             `json:"bridge_syncing"`
	Gmail      bool             `json:"gmail"`
	CapReached bool             `json:"daily_cap_reached"`
	Seconds    float64          `json:"seconds"`
}

func newExportReport(sum *export.Summary, runErr error, out string) *exportReport {
	v := &exportReport{Archive: out, Failed: []export.Failure{}, Undecrypt: []export.Failure{}}
	if sum != nil {
		v.Folders, v.Messages, v.Bytes, v.Duplicates, v.Bridge = sum.Folders, sum.Messages, sum.Bytes, sum.Duplicates, sum.Bridge
		v.Flags = sum.FlagsUpdated
		v.AllMail, v.Excluded = sum.AllMailOnly, sum.Excluded
		v.Seconds = sum.Elapsed.Seconds()
		v.Syncing = sum.BridgeSyncing
		v.Gmail = sum.Gmail
		if sum.Failed != nil {
			v.Failed = sum.Failed
		}
		if sum.Undecryptable != nil {
			v.Undecrypt = sum.Undecryptable
		}
	}
	if runErr != nil {
		v.Error = runErr.Error()
	}
	v.OK = runErr == nil && len(v.Failed) == 0 && len(v.Undecrypt) == 0
	var ce *account.CapError
	v.CapReached = errors.As(runErr, &ce)
	return v
}

// importReport is the --json summary of an import (and of the import half
// of a migrate).
type importReport struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	*imports.Summary
	// Tally is the summary's accounting in words:
	// seen = appended + already there + refused/skipped.
	Tally   string  `json:"tally"`
	Seconds float64 `json:"seconds"`
}

func newImportReport(sum *imports.Summary, runErr error) *importReport {
	if sum == nil {
		sum = &imports.Summary{}
	}
	if sum.Failed == nil {
		sum.Failed = []imports.Failure{}
	}
	if sum.Plan == nil {
		sum.Plan = []imports.FolderPlan{}
	}
	v := &importReport{Summary: sum, Tally: sum.Tally(), Seconds: sum.Elapsed.Seconds()}
	if runErr != nil {
		v.Error = runErr.Error()
	}
	v.OK = runErr == nil && len(sum.Failed) == 0
	return v
}

// writeJSON prints v, indented, on w.
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// printExportProblems lists on stderr what an export could not do well:
// messages not exported, messages Bridge could not decrypt, Bridge still
// syncing. It reports whether the exit code must be 3.
func printExportProblems(stderr io.Writer, sum *export.Summary) bool {
	if sum == nil {
		return false
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
	return len(sum.Failed) > 0 || len(sum.Undecryptable) > 0
}

// printImportProblems lists on stderr the messages and files an import
// could not take. It reports whether the exit code must be 3.
func printImportProblems(stderr io.Writer, sum *imports.Summary) bool {
	if sum == nil || len(sum.Failed) == 0 {
		return false
	}
	fmt.Fprintf(stderr, "mailmove: %d messages, folders or files were reported:\n", len(sum.Failed))
	for _, f := range sum.Failed {
		where := f.Source
		if f.Folder != "" && f.Kind != imports.KindFolder {
			where += " (to " + f.Folder + ")"
		}
		fmt.Fprintf(stderr, "  %s: %s\n", where, f.Error)
	}
	return true
}

// printImportPlan prints the tally of every target folder.
func printImportPlan(w io.Writer, sum *imports.Summary) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	done := "APPENDED"
	if sum.DryRun {
		done = "APPEND"
	}
	fmt.Fprintf(tw, "TARGET FOLDER\tNEW\tSEEN\t%s\tSIZE\tALREADY THERE\tREFUSED\tNOT DONE\tFROM\n", done)
	for _, p := range sum.Plan {
		create := ""
		if p.Create {
			create = "yes"
		}
		n := p.Appended
		if sum.DryRun {
			n = p.Append
		}
		folder := p.Folder
		if folder == "" {
			folder = "(none)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%s\n", folder, create, p.Messages, n, humanBytes(p.Bytes), p.Present+p.Journal, p.Refused, p.NotDone, p.Sources)
	}
	tw.Flush()
}

// failJSON prints, with --json, the object of a command that failed before
// it had anything to report: the header, "ok": false and the error.
func failJSON(stdout io.Writer, on bool, command string, err error) {
	if !on {
		return
	}
	writeJSON(stdout, struct {
		header
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}{newHeader(command), false, err.Error()})
}
