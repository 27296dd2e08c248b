package export

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/engine"
	"github.com/mailmove/mailmove/formats/archive"
)

// Run exports the account into the archive: the copy engine (engine.Run)
// from an IMAPSource (the account, with Proton Mail Bridge's rules) into
// an ArchiveSink (the archive, its index the record of what it holds).
// A Gmail account (X-GM-EXT-1, unless GmailLabels is folders) is read with
// Gmail's model (gmailsource.go: one metadata pass, each message once by
// X-GM-MSGID, its labels and thread in the index, a message archived once
// staying where it was archived); a run that finds All Mail, Spam and
// Trash as the last complete run left them makes no metadata pass
// (gmailstate.go).
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
	gmailWay := gmail && o.GmailLabels != GmailLabelsFolders
	var list []*account.Folder
	var roles *gmailRoles
	if gmailWay {
		var err error
		if list, err = first.ListFolders(); err != nil {
			first.Close()
			return nil, fmt.Errorf("listing folders: %w", err)
		}
		roles = gmailRolesOf(list)
		if same, n := gmailUnchanged(&o, roles); same {
			// nothing arrived and nothing moved to Spam or Trash since the
			// last complete run: no metadata pass
			first.Logout().Wait()
			first.Close()
			if o.Progress != nil {
				o.Progress.Planned(0, 0)
			}
			return &Summary{Gmail: true, Folders: n, Elapsed: time.Since(start)}, nil
		}
	}
	if gmail {
		if err := sameGmailModel(o.Archive, gmailWay); err != nil {
			first.Logout().Wait()
			first.Close()
			return nil, err
		}
	}
	mode := engine.LabelsKeywords
	if o.Labels == LabelsAsFolders || gmail {
		mode = engine.LabelsFolders
	}
	if gmailWay {
		mode = engine.LabelsKeywords // Gmail's model (the labels are recorded)
	}
	src := &IMAPSource{Account: o.Account, Conn: first, Include: o.Include, Exclude: o.Exclude, LabelMode: mode, Budget: o.Budget, Log: o.Log,
		GmailRecorded: true, ChunkSize: o.ChunkSize, listed: list}
	if gmailWay && o.Mirror {
		src.GmailMirror = o.Archive.Folders()
	}
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
	if gmailWay {
		return gmailSummary(ctx, &o, roles, esum, src, sink, start, err)
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

// gmailSummary ends a Gmail export: the daily budget saved, the state of
// All Mail, Spam and Trash recorded after a complete run (removed after
// any other), a daily cap returned as the *account.CapError it is.
func gmailSummary(ctx context.Context, o *Options, roles *gmailRoles, esum *engine.Summary, src *IMAPSource, sink *ArchiveSink, start time.Time, err error) (*Summary, error) {
	if berr := o.Budget.Save(); err == nil {
		err = berr
	}
	sum := &Summary{}
	if esum != nil {
		sum = summaryOf(esum, sink, start)
		// the engine's folders are groups (a mailbox's messages going into
		// one archive folder): counted by archive folder
		targets, examined := map[string]bool{}, map[string]bool{}
		for _, f := range esum.Folders {
			if f.Messages == 0 {
				continue // an empty group (GmailMirror): no message there
			}
			targets[f.Target] = true
			if f.Copy > 0 {
				examined[f.Target] = true
			}
		}
		sum.Folders, sum.Examined = len(targets), len(examined)
		sum.Excluded = src.Excluded()
		sum.Mirrored = sink.Moved()
	}
	sum.Gmail = true
	if ce := account.AsCapError(err, "download", true); ce != nil {
		err = ce // met anywhere (the metadata pass, a new connection's login)
	}
	clean := err == nil && ctx.Err() == nil && esum != nil && len(sum.Failed) == 0
	if serr := saveGmailState(o, roles, clean, sum.Folders); err == nil {
		err = serr
	}
	sum.Elapsed = time.Since(start)
	if esum == nil {
		var ce *account.CapError
		if errors.As(err, &ce) {
			return sum, err // what the cap let through is safe
		}
		return nil, err
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

// sameGmailModel refuses to add a Gmail export to an archive written the
// other way: the default model (each message once, by X-GM-MSGID) and
// --gmail-labels folders (one copy per label mailbox, by its UIDs) do not
// know each other's records, so every message would be archived again.
// It reads the index of the smallest folder that holds messages (an
// encrypted archive's records are sealed: not checked).
func sameGmailModel(a *archive.Archive, gmailWay bool) error {
	if a == nil || a.Encrypted() {
		return nil
	}
	folder, least := "", int64(-1)
	for _, f := range a.Folders() {
		if n := a.State(f).Count; n > 0 && (least < 0 || n < least) {
			folder, least = f, n
		}
	}
	if folder == "" {
		return nil
	}
	recs, err := a.Records(folder)
	if err != nil {
		return err
	}
	for _, r := range recs {
		switch {
		case gmailWay && r.GmailMsgID == "":
			return &account.UsageError{Msg: fmt.Sprintf("%s holds a Gmail export made with --gmail-labels folders (one copy per label); this run, the default way, would archive every message again: give --gmail-labels folders again, or a new --out", a.Root)}
		case !gmailWay && r.GmailMsgID != "":
			return &account.UsageError{Msg: fmt.Sprintf("%s holds a Gmail export made the default way (each message once); --gmail-labels folders would archive every message again: leave it out, or give a new --out", a.Root)}
		}
	}
	return nil
}
