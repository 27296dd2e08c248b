// Package engine is mailmove's copy engine: it copies messages from a
// Source (something that yields messages: an IMAP account, with the rules
// of Proton Mail Bridge) to a Sink (something that holds messages and can
// take more: an IMAP account, with Bridge's rules as a target), folder by
// folder, streaming each message from the one to the other.
//
// The engine keeps a journal per (source, sink) pair: every message it
// copied (source folder, UIDVALIDITY, UID -> target folder and UID, content
// key, flags as last copied). A re-run copies only what is new, brings
// flags and keywords of copied messages up to date, and, with Delete,
// removes at the target the copies of messages gone from the source. An
// interrupted run (kill -9, a dropped connection) is resumed by the next:
// appends are bracketed in the journal, and a message appended but not yet
// journaled is found at the target by its content key (Message-ID and size,
// or the SHA-256 of its header for a message without Message-ID).
package engine

import (
	"context"
	"errors"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailmove/mailmove/message"
)

// Message is one message a Source yields: its metadata; the bytes come
// separately, as a stream of Size bytes.
type Message struct {
	// Folder is the source folder ("/" between levels).
	Folder      string
	UIDValidity uint32
	UID         uint32
	// Size is the message's size in bytes (RFC822.SIZE): the stream has
	// exactly this many.
	Size int64
	// Flags are the message's flags and keywords (never \Recent).
	Flags []string
	// Labels are Proton labels (Proton Mail Bridge), "Starred" included.
	Labels       []string
	InternalDate time.Time
	// MessageID is the Message-ID without <>, empty when there is none.
	MessageID string
	// HeaderHash is the hex SHA-256 of the header, for messages without a
	// Message-ID.
	HeaderHash string
	// PMID is Proton's X-Pm-Internal-Id (Bridge).
	PMID string
	// GmailID is Gmail's X-GM-MSGID (a Gmail source): the message is
	// copied once whatever mailbox or labels it has.
	GmailID string
	// GmailThreadID is Gmail's X-GM-THRID (a Gmail source), recorded by
	// a sink that keeps it (an archive).
	GmailThreadID string
	// ID is the message's stable identity in a source whose UIDs number
	// its messages for one pass only (files: an mbox, a Maildir; see
	// IDReader). The journal records it, and a later run recognises the
	// message by it, whatever UID it has then.
	ID string
}

// LabelKey is the key by which a Source knows a message's labels: its
// X-Pm-Internal-Id (Bridge), "gm:" and its X-GM-MSGID (Gmail), or "".
func LabelKey(pm, gm string) string {
	if pm != "" {
		return pm
	}
	if gm != "" {
		return "gm:" + gm
	}
	return ""
}

// LabelKeyOf is LabelKey with a third form: "id:" and the message's ID
// for a message of an IDReader that has neither (labels read from files).
func LabelKeyOf(pm, gm, id string) string {
	if k := LabelKey(pm, gm); k != "" || id == "" {
		return k
	}
	return "id:" + id
}

// Folder is a source folder to copy.
type Folder struct {
	// Name is the folder's path, "/" between levels.
	Name string
	// Role is its special use ("\\Sent", "\\Drafts", ...), empty if none.
	Role string
	// Messages, Bytes, UIDValidity, UIDNext and ModSeq are the folder's
	// status when the folders were listed (Bytes and ModSeq may be 0).
	Messages    uint32
	Bytes       int64
	UIDValidity uint32
	UIDNext     uint32
	ModSeq      uint64
	// AllMail marks Proton Mail Bridge's All Mail: only its messages that
	// are in no folder are copied, after every folder was copied.
	AllMail bool
	// Handle is the source's own reference.
	Handle any
}

// Select restricts a listing to a range of INTERNALDATE (zero: no bound).
type Select struct {
	Since, Before time.Time
}

// BodyFunc receives one message's bytes; it must read them to the end.
// size is the number of bytes, or -1 for a message whose metadata came
// from an Indexer rather than Meta (the reader did not measure it).
type BodyFunc func(uid uint32, body io.Reader, size int64) error

// Source yields messages.
type Source interface {
	// Folders lists the folders to copy.
	Folders(ctx context.Context) ([]*Folder, error)
	// Open opens a folder for reading (read-only).
	Open(ctx context.Context, f *Folder) (FolderReader, error)
	// Labels returns the labels of a message by its LabelKeyOf: Proton
	// labels (Bridge), Gmail labels, the labels files carry (Takeout, an
	// archive) for an IDReader's messages (nil for other sources).
	Labels(key string) []string
	// Bridge reports whether the source is Proton Mail Bridge.
	Bridge() bool
	// Close releases the source's connections.
	Close() error
}

// Placer is a Source that places each message in a folder itself (Gmail:
// a message is one X-GM-MSGID, found in All Mail, Spam or Trash). Before
// Folders, the engine tells it where earlier runs put messages, so that a
// message copied once stays where it was copied (its new labels and flags
// are brought to that copy) instead of being copied again when its labels
// change.
type Placer interface {
	// Place gives the source folder an earlier run put the message with
	// this X-GM-MSGID in ("" when none).
	Place(placed func(gmailID string) string)
	// Holds reports whether the source still holds the message (for
	// Delete: a message that moved is not gone).
	Holds(gmailID string) bool
	// Placing reports whether the source placed its messages itself in
	// this run (after Folders): then a copy recorded without its Gmail ID
	// (an earlier run that read Gmail folder by folder) cannot be told
	// gone, and Delete leaves it.
	Placing() bool
}

// PlacementRecorder is a Recorder that can say, before the source lists
// its folders, where every Gmail message it holds was placed: the engine
// gives that to a Placer, since a Recorder is asked what it holds folder by
// folder only as each folder is copied.
type PlacementRecorder interface {
	Recorder
	// GmailPlaced returns, by X-GM-MSGID, the source folder each Gmail
	// message recorded was copied from.
	GmailPlaced(ctx context.Context) (map[string]string, error)
}

// LabelSink is a Sink that stores labels itself (Gmail, with STORE
// +X-GM-LABELS): messages are given to Put with their labels, and labels
// do not become keywords.
type LabelSink interface {
	TakesLabels() bool
}

// FolderReader reads one open source folder.
type FolderReader interface {
	// State returns the open folder's UIDVALIDITY and HIGHESTMODSEQ (0
	// without CONDSTORE).
	State() (uidValidity uint32, modSeq uint64)
	// UIDs lists the UIDs of the folder's messages that sel selects.
	UIDs(ctx context.Context, sel Select) ([]uint32, error)
	// Flags returns the flags of the folder's messages; with changedSince
	// set, of those whose flags changed since that MODSEQ only.
	Flags(ctx context.Context, changedSince uint64) (map[uint32][]string, error)
	// Meta returns the metadata of uids. A UID absent from the result was
	// expunged; one the source holds but did not describe is an error.
	Meta(ctx context.Context, uids []uint32) (map[uint32]*Message, error)
	// Fetch streams the bytes of uids to fn and returns those delivered.
	Fetch(ctx context.Context, uids []uint32, fn BodyFunc) (map[uint32]bool, error)
	// Close gives the connection back (err == nil) or drops it.
	Close(err error)
}

// IDReader is a FolderReader without stable UIDs (files: UIDs number the
// messages of one pass, and a Maildir that gains a file renumbers them).
// Each message has an ID instead: the journal records the ID, and a
// message already copied is recognised by it in a later run. Its Meta
// sets Message.ID.
type IDReader interface {
	// IDs returns the ID of each of uids.
	IDs(ctx context.Context, uids []uint32) (map[uint32]string, error)
}

// Indexer is a FolderReader that can describe its messages from an index
// without reading their bytes (a mailmove archive). verify's cheap
// comparison reads an archive this way, as an export wrote it.
type Indexer interface {
	// Indexed returns the metadata the index records for those of uids it
	// indexes (Size is the size stored; Labels are the labels recorded),
	// nil for a reader with no index.
	Indexed(uids []uint32) map[uint32]*Message
}

// ContentHasher is a FolderWriter that can give the SHA-256 of the bytes of
// messages it holds. A source message without Message-ID is known at the
// target by its header's SHA-256 and its size, which another message can
// share (a daily report of a cron job: the same header, another body):
// found so, it is taken as there only when its bytes are.
type ContentHasher interface {
	// Hashes returns the SHA-256 of the bytes of uids, as the target
	// serves them; ok false when the target does not keep a message's
	// bytes as it takes them (Proton Mail Bridge, Gmail), and the key
	// must do.
	Hashes(ctx context.Context, uids []uint32) (hashes map[uint32]string, ok bool, err error)
}

// Description is what a report shows of a message besides its metadata.
type Description struct {
	// Subject is the Subject header, RFC 2047 decoded.
	Subject string
	// Date is the Date header (zero when it cannot be read).
	Date time.Time
	// Where is where a local source holds the message (file, line or
	// byte), empty for an account.
	Where string
}

// Describer is a FolderReader that can describe messages for a report
// (verify names what is missing or extra by subject and date) without
// sending their bodies.
type Describer interface {
	Describe(ctx context.Context, uids []uint32) (map[uint32]Description, error)
}

// Held is a message the sink holds.
type Held struct {
	UID uint32
}

// PutFunc receives the sink's answer for one message: its UID at the target
// (0 when unknown) or why it was not stored.
type PutFunc func(uid, uidValidity uint32, err error)

// Sink holds messages and takes more.
type Sink interface {
	// Target maps a source folder to a target folder ("/" between levels),
	// or says why it cannot be copied.
	Target(f *Folder) (name, why string)
	// Key is the content key by which the sink recognises a message it
	// holds.
	Key(m *Message) string
	// Open opens a target folder; create makes it when missing, else a
	// missing folder opens empty (Exists false) and takes nothing.
	Open(ctx context.Context, name string, create bool) (FolderWriter, error)
	// Close releases the sink's connections.
	Close() error
}

// FolderWriter writes into one open target folder.
type FolderWriter interface {
	// Exists reports whether the folder exists at the target.
	Exists() bool
	// UIDValidity is the folder's UIDVALIDITY (0 when it does not exist).
	UIDValidity() uint32
	// Inventory lists what the folder holds, by content key.
	Inventory(ctx context.Context) (map[string][]Held, error)
	// Put stores a message, reading body to its end, and calls done with
	// the answer, possibly later (see Flush).
	Put(ctx context.Context, m *Message, body io.Reader, done PutFunc) error
	// Flush returns once every message Put was answered.
	Flush() error
	// Store adds and removes flags of messages (by target UID).
	Store(uids []uint32, add, remove []string) error
	// Delete removes messages (by target UID).
	Delete(uids []uint32) error
	// Unstorable returns the flags of m the folder cannot store.
	Unstorable(flags []string) []string
	// Settle waits until the folder's message count is still (after an
	// interrupted run whose last appends the server may still be saving).
	Settle(ctx context.Context)
	// Close gives the connection back (err == nil) or drops it.
	Close(err error)
}

// ErrBatchRefused says the server refused a batch of appends as a whole
// (MULTIAPPEND is all or nothing): each message is sent again alone.
var ErrBatchRefused = errors.New("the server refused the batch this message was in")

// RefusedError is the target's refusal of one message (the server's
// words, or a rule of the target such as Proton's size limit).
type RefusedError struct{ Reason string }

// Error returns the reason.
func (e *RefusedError) Error() string { return e.Reason }

// FatalError stops the whole run (the target is over quota, the journal
// cannot be written).
type FatalError struct{ Err error }

// Error returns the cause's text.
func (e *FatalError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *FatalError) Unwrap() error { return e.Err }

// UndeliveredError is a source's refusal to deliver some of the messages
// asked for, on a connection that still works (an IMAP NO to a FETCH):
// they are asked for again one at a time, and those still refused are
// reported with the source's words; the folder's other messages go on.
type UndeliveredError struct {
	Err error
	// UIDs, from FolderReader.Meta, are the messages the source would not
	// describe (the others are in its result).
	UIDs []uint32
}

// Error returns the source's words.
func (e *UndeliveredError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *UndeliveredError) Unwrap() error { return e.Err }

// LabelMode says what happens to Proton labels.
type LabelMode string

// Label modes.
const (
	// LabelsKeywords sets each label as an IMAP keyword on the message's
	// copy (the default); Starred is \Flagged.
	LabelsKeywords LabelMode = "keywords"
	// LabelsFolders copies each Labels/... folder as a folder.
	LabelsFolders LabelMode = "folders"
	// LabelsSkip leaves labels behind (Starred still is \Flagged).
	LabelsSkip LabelMode = "skip"
)

// Options configure a copy.
type Options struct {
	Source Source
	Sink   Sink
	// JournalPath is the journal of this (source, sink) pair.
	JournalPath string
	Labels      LabelMode
	// Delete removes at the target the copies this tool made of messages
	// that are gone from the source.
	Delete bool
	// NoFlagSync leaves the flags of messages copied earlier as they were
	// copied (export without --refresh-flags): a folder whose UIDVALIDITY,
	// UIDNEXT and message count did not move is unchanged, and its state
	// is recorded without HIGHESTMODSEQ, so that a later run that
	// compares flags looks at it.
	NoFlagSync bool
	// DryRun reads both sides and changes nothing.
	DryRun bool
	// Select restricts the messages copied by INTERNALDATE.
	Select Select
	// FirstBackoff is the wait before the first reconnect after a
	// connection dropped (default 1s; doubled at each failed attempt).
	FirstBackoff time.Duration
	// Connections is how many folders are copied at once (default 4).
	Connections int
	// Progress, if set, is told about progress.
	Progress message.Progress
	// Log, if set, receives warnings.
	Log func(format string, a ...any)
	// Keep, if set, is a second sink that receives a copy of each message
	// copied into Sink, as it goes by (migrate --keep-archive: an
	// archive). A message Keep already holds (by its Key) is not given to
	// it again; flags and deletions are not brought to it. A failure of
	// Keep stops the run.
	Keep Sink
}

// Failure is a message or folder that could not be copied.
type Failure struct {
	Folder string `json:"folder"`
	UID    uint32 `json:"uid,omitempty"`
	Error  string `json:"error"`
}

// FolderSummary is what happened to one folder.
type FolderSummary struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// Create: the target folder did not exist.
	Create   bool  `json:"create"`
	Messages int   `json:"messages"`
	Bytes    int64 `json:"bytes"`
	// Copy is how many messages were (DryRun: would be) copied, CopyBytes their size.
	Copy      int   `json:"copy"`
	CopyBytes int64 `json:"copy_bytes"`
	Copied    int   `json:"copied"`
	// Present are messages found at the target or in the journal.
	Present int `json:"already_there"`
	// Known are those of Present the journal knew (the others were found
	// at the target).
	Known        int  `json:"-"`
	FlagsUpdated int  `json:"flags_updated"`
	Deleted      int  `json:"deleted"`
	Unchanged    bool `json:"unchanged"`
	// UIDValidity and UIDNext are the source folder's, when the run
	// listed it (0 when the source does not say): a message with a UID
	// from UIDNext on arrived during the run.
	UIDValidity uint32 `json:"-"`
	UIDNext     uint32 `json:"-"`
}

// Check is the cheap check at the end: every source message's content key
// at the target.
type Check struct {
	// Folders and Messages are what was checked in this run.
	Folders  int `json:"folders"`
	Messages int `json:"messages"`
	// Unchanged are folders not looked at (unchanged since a run that
	// checked them).
	Unchanged int       `json:"unchanged"`
	Missing   []Failure `json:"missing"`
}

// Summary is what a copy did.
type Summary struct {
	Folders       []*FolderSummary `json:"folders"`
	Copied        int              `json:"copied"`
	Bytes         int64            `json:"bytes"`
	AlreadyThere  int              `json:"already_there"`
	FlagsUpdated  int              `json:"flags_updated"`
	Deleted       int              `json:"deleted"`
	Failed        []Failure        `json:"failed"`
	Undecryptable []Failure        `json:"undecryptable,omitempty"`
	// Unstorable are keywords (labels) the target could not store.
	Unstorable []string `json:"unstorable_keywords,omitempty"`
	// AllMailOnly counts Bridge messages in no folder, copied from All Mail.
	AllMailOnly int   `json:"all_mail_only,omitempty"`
	Excluded    int   `json:"excluded,omitempty"`
	Check       Check `json:"check"`
	Bridge      bool  `json:"bridge"`
	DryRun      bool  `json:"dry_run"`

	unstorable map[string]bool
}

// KeyOf is the usual content key: Message-ID and size, or the header's
// SHA-256 and size for a message without Message-ID.
func KeyOf(m *Message) string {
	if m.MessageID != "" {
		return "id:" + m.MessageID + " " + strconv.FormatInt(m.Size, 10)
	}
	return "hdr:" + m.HeaderHash + " " + strconv.FormatInt(m.Size, 10)
}

// Keywords turns labels into IMAP keywords: Starred is \Flagged, other
// labels keywords (characters IMAP does not allow in an atom become "_").
func Keywords(labels []string, mode LabelMode) []string {
	var out []string
	for _, l := range labels {
		if l == "Starred" {
			out = append(out, `\Flagged`)
			continue
		}
		if mode != LabelsKeywords {
			continue
		}
		var b strings.Builder
		for _, r := range l {
			if r <= ' ' || r >= 0x7f || strings.ContainsRune(`(){%*"\]`, r) {
				b.WriteByte('_')
			} else {
				b.WriteRune(r)
			}
		}
		if b.Len() > 0 {
			out = append(out, b.String())
		}
	}
	return out
}

// CopyFlags are the flags a copy gets at a target that takes labels as
// keywords: the source's flags and the labels as Keywords in mode, once
// each (case does not matter), sorted.
func CopyFlags(flags, labels []string, mode LabelMode) []string {
	return union(flags, Keywords(labels, mode))
}

// flagSet normalises flags for comparison.
func flagSet(flags []string) map[string]string {
	m := map[string]string{}
	for _, f := range flags {
		if f == "" || strings.EqualFold(f, `\Recent`) {
			continue
		}
		m[strings.ToLower(f)] = f
	}
	return m
}

// union returns the flags of a and b, once each, sorted.
func union(a, b []string) []string {
	m := flagSet(a)
	for k, v := range flagSet(b) {
		m[k] = v
	}
	out := []string{}
	for _, v := range m {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// diff returns what to add to old and remove from it to make it new.
func diff(old, new []string) (add, remove []string) {
	o, n := flagSet(old), flagSet(new)
	for k, v := range n {
		if _, ok := o[k]; !ok {
			add = append(add, v)
		}
	}
	for k, v := range o {
		if _, ok := n[k]; !ok {
			remove = append(remove, v)
		}
	}
	sort.Strings(add)
	sort.Strings(remove)
	return add, remove
}
