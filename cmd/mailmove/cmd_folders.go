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

func cmdFolders(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("folders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := addAccountFlags(fs, "from")
	var include, exclude multiFlag
	fs.Var(&include, "folder", "only folders matching this glob `pattern` (repeatable)")
	fs.Var(&exclude, "exclude", "skip folders matching this glob `pattern` (repeatable)")
	labels := fs.String("bridge-labels", "metadata", "Proton labels: `metadata` or folders, as for export")
	jsonOut := fs.Bool("json", false, "print JSON")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove folders --from URL [flags]\n\nLists the folders that export would export, with message counts and sizes.\n\n")
		fs.PrintDefaults()
	}
	pos, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "mailmove folders: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	cfg, stop, err := from.config(ctx, stderr)
	if err != nil {
		failJSON(stdout, *jsonOut, "folders", err)
		return errorExit(stderr, err)
	}
	defer stop()
	st := newStatusLine(stderr, isTerminal(os.Stderr), "connecting to "+cfg.URL.Addr())
	defer st.clear()
	cfg.Status = st.set
	c, err := cfg.Dial(ctx)
	if err != nil {
		st.clear()
		failJSON(stdout, *jsonOut, "folders", err)
		return errorExit(stderr, err)
	}
	st.set("listing folders")
	defer c.Close()
	all, err := c.ListFolders()
	if err != nil {
		st.clear()
		failJSON(stdout, *jsonOut, "folders", err)
		return errorExit(stderr, err)
	}
	st.set("counting messages")
	bridge := cfg.URL.Bridge || c.IsBridge()
	sel := export.Plan(all, bridge, export.LabelMode(*labels), include, exclude)
	type row struct {
		Folder   string `json:"folder"`
		Messages uint32 `json:"messages"`
		Bytes    *int64 `json:"bytes,omitempty"`
		Note     string `json:"note,omitempty"`
	}
	var rows []row
	var total uint32
	var totalBytes int64
	for _, f := range sel {
		r := row{Folder: f.Path()}
		if f.Status != nil {
			if f.Status.NumMessages != nil {
				r.Messages = *f.Status.NumMessages
			}
			r.Bytes = f.Status.Size
		}
		if r.Bytes == nil {
			// no STATUS=SIZE: add up the messages' sizes
			if n, size, err := c.TotalSize(f.Name); err == nil {
				r.Messages, r.Bytes = n, &size
			}
		}
		if bridge && f.Name == "All Mail" {
			r.Note = "only messages in no folder are exported"
		} else {
			total += r.Messages
			if r.Bytes != nil {
				totalBytes += *r.Bytes
			}
		}
		rows = append(rows, r)
	}
	c.Logout().Wait()
	st.clear()
	if *jsonOut {
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
		return exitOK
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
		fmt.Fprintf(stdout, "%d folders, %d messages, %s\n", len(rows), total, humanBytes(totalBytes))
	} else {
		fmt.Fprintf(stdout, "%d folders, %d messages\n", len(rows), total)
	}
	return exitOK
}
