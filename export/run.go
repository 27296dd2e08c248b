package export

import (
	"context"
	"time"

	"github.com/mailmove/mailmove/engine"
)

// Run exports the account into the archive: the copy engine (engine.Run)
// from an IMAPSource (the account, with Proton Mail Bridge's rules) into
// an ArchiveSink (the archive, its index the record of what it holds).
// Gmail accounts (X-GM-EXT-1, unless GmailLabels is folders) are still
// exported by export's own engine (runGmail, gmail.go).
func Run(ctx context.Context, o Options) (*Summary, error) {
	start := time.Now()
	if o.Connections <= 0 {
		o.Connections = 4
	}
	if o.Labels == "" {
		o.Labels = LabelsAsMetadata
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	first := o.Conn
	if first == nil {
		var err error
		if first, err = o.Account.Dial(ctx); err != nil {
			return nil, err
		}
	}
	bridge := o.Account.URL.Bridge || first.IsBridge()
	gmail := !bridge && first.IsGmail()
	if gmail && o.GmailLabels != GmailLabelsFolders {
		return runGmailAccount(ctx, o, first)
	}
	mode := engine.LabelsKeywords
	if o.Labels == LabelsAsFolders || gmail {
		mode = engine.LabelsFolders
	}
	src := &IMAPSource{Account: o.Account, Conn: first, Include: o.Include, Exclude: o.Exclude, LabelMode: mode, Budget: o.Budget, Log: o.Log}
	defer src.Close()
	sink := &ArchiveSink{Archive: o.Archive, Source: src}
	eo := engine.Options{Source: src, Sink: sink, Delete: o.Mirror, NoFlagSync: !o.RefreshFlags, Connections: o.Connections, Log: o.Log,
		FirstBackoff: firstBackoff}
	if o.Progress != nil {
		eo.Progress = o.Progress
	}
	esum, err := engine.Run(ctx, eo)
	if cerr := sink.Close(); err == nil {
		err = cerr
	}
	if esum == nil {
		return nil, err
	}
	sum := summaryOf(esum, sink, start)
	sum.Excluded = src.Excluded()
	sum.Mirrored = sink.Moved()
	if err == nil && ctx.Err() == nil {
		sum.BridgeSyncing = src.BridgeSyncing(ctx)
	}
	return sum, err
}

// summaryOf is export's summary of an engine run into an ArchiveSink.
func summaryOf(es *engine.Summary, sink *ArchiveSink, start time.Time) *Summary {
	aliases, aliasBytes := sink.Aliases()
	s := &Summary{
		Folders:      len(es.Folders),
		Examined:     len(es.Folders) - es.Check.Unchanged,
		Messages:     es.Copied - aliases,
		Bytes:        es.Bytes - aliasBytes,
		Duplicates:   aliases,
		FlagsUpdated: es.FlagsUpdated,
		Bridge:       es.Bridge,
		AllMailOnly:  es.AllMailOnly,
		Excluded:     es.Excluded,
		Mirrored:     es.Deleted,
		Elapsed:      time.Since(start),
	}
	for _, f := range es.Failed {
		s.Failed = append(s.Failed, Failure{Folder: f.Folder, UID: f.UID, Error: f.Error})
	}
	for _, f := range es.Check.Missing {
		s.Failed = append(s.Failed, Failure{Folder: f.Folder, UID: f.UID, Error: "not in the archive after the run: " + f.Error})
	}
	for _, f := range es.Undecryptable {
		s.Undecryptable = append(s.Undecryptable, Failure{Folder: f.Folder, UID: f.UID,
			Error: "Proton Mail Bridge could not decrypt this message; the archive holds what Bridge served"})
	}
	return s
}
