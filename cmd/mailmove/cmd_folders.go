package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/mailmove/mailmove/export"
)

// cmdFolders lists the folders that export would export, with message
// counts and sizes. It changes nothing on the account.
func cmdFolders(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFolders(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runFolders(ctx, o, stdout, stderr)
}

// foldersOptions are folders' command line.
type foldersOptions struct {
	from             *accountFlags
	include, exclude multiFlag
	// labels and gmailLabels are --bridge-labels and --gmail-labels, as
	// for export (not checked, as before: an unknown value is metadata).
	labels      export.LabelMode
	gmailLabels string
	json        bool
}

// parseFolders reads folders' command line and checks it.
func parseFolders(args []string, stdout, stderr io.Writer) (*foldersOptions, error) {
	fs := flag.NewFlagSet("folders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &foldersOptions{from: addAccountFlags(fs, "from")}
	fs.Var(&o.include, "folder", "only folders matching this glob `pattern` (repeatable)")
	fs.Var(&o.exclude, "exclude", "skip folders matching this glob `pattern` (repeatable)")
	labels := fs.String("bridge-labels", "metadata", "Proton labels: `metadata` or folders, as for export")
	fs.StringVar(&o.gmailLabels, "gmail-labels", "metadata", "Gmail labels: `metadata` or folders, as for export")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove folders --from URL [flags]\n\nLists the folders that export would export, with message counts and sizes.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 {
		return nil, usagef("folders", "unexpected argument %q", pos[0])
	}
	o.labels = export.LabelMode(*labels)
	if o.labels != export.LabelsAsMetadata && o.labels != export.LabelsAsFolders {
		return nil, usagef("folders", "--bridge-labels %s: want metadata or folders", *labels)
	}
	if o.gmailLabels != "metadata" && o.gmailLabels != "folders" {
		return nil, usagef("folders", "--gmail-labels %s: want metadata or folders", o.gmailLabels)
	}
	return o, nil
}

// runFolders lists the account's folders as export would plan them and
// prints them.
func runFolders(ctx context.Context, o *foldersOptions, stdout, stderr io.Writer) error {
	cfg, stop, err := o.from.config(ctx, stderr)
	if err != nil {
		failJSON(stdout, o.json, "folders", err)
		return err
	}
	defer stop()
	st := newStatusLine(stderr, isTerminal(os.Stderr), "connecting to "+cfg.URL.Addr())
	defer st.clear()
	cfg.Status = st.set
	c, err := cfg.Dial(ctx)
	if err != nil {
		st.clear()
		failJSON(stdout, o.json, "folders", err)
		return err
	}
	st.set("listing folders")
	defer c.Close()
	all, err := c.ListFolders()
	if err != nil {
		st.clear()
		failJSON(stdout, o.json, "folders", err)
		return err
	}
	st.set("counting messages")
	bridge := cfg.URL.Bridge || c.IsBridge()
	sel := export.PlanFolders(all, bridge, o.labels, o.include, o.exclude)
	type row struct {
		Folder string `json:"folder"`
		// Archive is the folder's name in an archive (Bridge: without Folders/).
		Archive  string `json:"archive_folder"`
		Messages uint32 `json:"messages"`
		// Exported is how many of them an export stores (Bridge's All Mail:
		// only those in no folder).
		Exported uint32 `json:"exported"`
		Bytes    *int64 `json:"bytes,omitempty"`
		Note     string `json:"note,omitempty"`
	}
	var rows []row
	var total uint32
	var totalBytes int64
	gmail := !bridge && o.gmailLabels != "folders" && c.IsGmail()
	if gmail {
		// Gmail: each message once, in the folder the rule picks (see
		// export/gmail.go); a metadata pass counts them
		st.set("reading Gmail's labels")
		planned, _, err := export.GmailFolders(ctx, cfg, all, o.include, o.exclude)
		if err != nil {
			st.clear()
			failJSON(stdout, o.json, "folders", err)
			return err
		}
		sel = nil
		for _, p := range planned {
			r := row{Folder: p.Folder.Path(), Archive: p.Name, Exported: uint32(p.Messages), Bytes: &p.Bytes}
			if s := p.Folder.Status; s != nil && s.NumMessages != nil {
				r.Messages = *s.NumMessages
			}
			if r.Messages != r.Exported {
				r.Note = fmt.Sprintf("Gmail: %d stored here, the others once in another folder (labels in the index)", r.Exported)
			}
			total += r.Exported
			totalBytes += p.Bytes
			rows = append(rows, r)
		}
	}
	for _, p := range sel {
		f := p.Folder
		r := row{Folder: f.Path(), Archive: p.Name}
		if f.Status != nil {
			if f.Status.NumMessages != nil {
				r.Messages = *f.Status.NumMessages
			}
			r.Bytes = f.Status.Size
		}
		if r.Bytes == nil && !p.AllMail {
			// no STATUS=SIZE: add up the messages' sizes
			if n, size, err := c.TotalSize(f.Name); err == nil {
				r.Messages, r.Bytes = n, &size
			}
		}
		r.Exported = r.Messages
		if p.AllMail {
			// the messages in no folder: the others are in the folders
			// listed (or in excluded ones), not copied again
			n, excluded, err := export.AllMailOnly(c, all, o.labels, o.include, o.exclude)
			if err != nil {
				return fmt.Errorf("finding the messages of All Mail that are in no folder: %w", err)
			}
			r.Exported, r.Bytes = uint32(n), nil
			r.Note = fmt.Sprintf("a view of every message: only the %d in no folder are exported", n)
			if excluded > 0 {
				r.Note += fmt.Sprintf("; %d of excluded folders are left out", excluded)
			}
		}
		total += r.Exported
		if r.Bytes != nil {
			totalBytes += *r.Bytes
		}
		rows = append(rows, r)
	}
	c.Logout().Wait()
	st.clear()
	if o.json {
		if rows == nil {
			rows = []row{}
		}
		writeJSON(stdout, struct {
			header
			OK       bool   `json:"ok"`
			Folders  []row  `json:"folders"`
			Messages uint32 `json:"messages"`
			Bytes    int64  `json:"bytes"`
		}{newHeader("folders"), true, rows, total, totalBytes})
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FOLDER\tMESSAGES\tSIZE\t")
	for _, r := range rows {
		size := "-"
		if r.Bytes != nil {
			size = humanBytes(*r.Bytes)
		}
		note := ""
		if r.Note != "" {
			note = "  (" + r.Note + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", r.Folder, r.Messages, size, note)
	}
	tw.Flush()
	if totalBytes > 0 {
		fmt.Fprintf(stdout, "%d folders, %d messages to export, %s\n", len(rows), total, humanBytes(totalBytes))
	} else {
		fmt.Fprintf(stdout, "%d folders, %d messages to export\n", len(rows), total)
	}
	if gmail {
		fmt.Fprintln(stdout, "(Gmail: each message is exported once, into INBOX, Sent, Drafts, Spam or Trash, else its first label, else All Mail; all its labels are recorded in the index)")
	}
	if bridge {
		fmt.Fprintln(stdout, "(Proton Mail Bridge: a message in two folders counts in each, as it is stored in each; All Mail, Starred and Labels/ are views: their messages count once, in their folders, and their labels are recorded)")
	}
	return nil
}
