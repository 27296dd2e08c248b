package engine

import (
	"context"
)

// Recorder is a Sink that is its own record of what was copied: a
// mailmove archive, whose index says for every message it holds the
// source folder's UIDVALIDITY and the message's UID, its flags and labels.
// For such a sink the engine writes no journal file (it would repeat the
// index, and in an encrypted archive show in clear what the index seals):
// it asks the sink, folder by folder, what it holds, and tells it the state
// of each pass over a folder that finished. A message counts as copied once
// the sink answered its Put, which a Recorder does only once the message
// and its record are durable.
type Recorder interface {
	Sink
	// Marked returns the state recorded after the last pass over source
	// folder f into target that finished; ok is false when there is none
	// (or the last pass left messages behind).
	Marked(f *Folder, target string) (m Mark, ok bool)
	// Recorded returns the messages of source folder f that target holds.
	Recorded(ctx context.Context, f *Folder, target string) ([]Recorded, error)
	// SetMark records the state after a pass over f that finished, every
	// message of it at the target but those in m.Failed.
	SetMark(f *Folder, target string, m Mark) error
	// FlagsSum is how the sink records a message's flags and labels
	// (labelKey is the message's LabelKey), compared with
	// Recorded.FlagsSum to see a change.
	FlagsSum(flags []string, labelKey string, labels []string) string
}

// RecordWriter is the FolderWriter of a Recorder: it records a message's
// flags and labels whole.
type RecordWriter interface {
	FolderWriter
	// SetFlags records new flags and labels for the message with target
	// UID tuid.
	SetFlags(tuid uint32, flags []string, labelKey string, labels []string) error
}

// Mark is the state of a source folder after a pass that finished.
type Mark struct {
	UIDValidity, UIDNext, Messages uint32
	ModSeq                         uint64
	// Failed are the UIDs reported as failed in the pass (every other
	// message is at the target): the next run tries them again.
	Failed []uint32
	// Deleted: the pass also removed at the target the copies of messages
	// gone from the source (Options.Delete). With Delete, a folder is
	// unchanged only since a pass that did.
	Deleted bool
}

// Recorded is one message a Recorder holds.
type Recorded struct {
	// UIDValidity and UID are the source's.
	UIDValidity, UID uint32
	// TUIDValidity and TUID are the message's UIDVALIDITY and UID at the
	// target.
	TUIDValidity, TUID uint32
	// Key is the sink's content key (Sink.Key).
	Key           string
	PMID, GmailID string
	// FlagsSum stands for the flags and labels recorded (see
	// Recorder.FlagsSum).
	FlagsSum string
}

// load fills the journal with what a Recorder holds of a source folder,
// once per run.
func (j *journal) load(ctx context.Context, rec Recorder, f *Folder, target string) error {
	j.mu.Lock()
	done := j.loaded[f.Name]
	j.mu.Unlock()
	if done {
		return nil
	}
	recs, err := rec.Recorded(ctx, f, target)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, r := range recs {
		k := srcKey{f.Name, r.UIDValidity, r.UID, ""}
		j.msgs[k] = &entry{tf: target, tuv: r.TUIDValidity, tuid: r.TUID, key: r.Key, pm: r.PMID, gm: r.GmailID, flags: []string{}, sum: r.FlagsSum}
		if r.GmailID != "" {
			j.gm[r.GmailID] = k
		}
	}
	j.loaded[f.Name] = true
	return nil
}
