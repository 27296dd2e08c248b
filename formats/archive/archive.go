// Package archive is a mailmove archive on disk: messages in mbox files or
// one .eml file per message, laid out by folder, with a crash-safe index in
// OUT/.mailmove/ that records every message's metadata. The layout is
// documented in the README ("Archive layout").
//
// Writing is transactional per message: a message is either in its mbox or
// .eml file and in the index, or (after the next Open) in neither. Data is
// made durable (fsync) before the index line that points to it is written,
// in batches.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/mailmove/mailmove/message"
)

// Format is how messages are stored.
type Format string

const (
	// Mbox stores each folder as one mboxrd file, OUT/<folder>.mbox.
	Mbox Format = "mbox"
	// EML stores each message as OUT/<folder>/<name>.eml.
	EML Format = "eml"
)

// Version is the newest archive format version, in .mailmove/archive.json.
// Version 2 added encrypted and compressed archives (Header.Encryption,
// Header.Compression); a plain archive is still written as version 1, so
// that an older mailmove reads it, and an older one refuses a version 2
// archive rather than misread it. Version 3 is an archive whose index holds
// lines that are not messages (flags_update lines: flags and labels
// changed on the server; gone lines: messages moved into the deleted area):
// an archive is raised to it before the first such line is written, so that
// an older mailmove, which would take them for messages, refuses it.
const Version = 3

// knownVersion is the newest version this mailmove reads (Version; a test
// plays an older mailmove by lowering it).
var knownVersion = Version

// VersionUpdates is the version an archive is raised to before its index
// gets a flags_update or gone line.
const VersionUpdates = 3

// StateDir is the name of the state folder inside an archive.
const StateDir = ".mailmove"

// TmpDir is where .eml files are written before they are renamed into
// their folder, relative to the archive root: inside the archive (same file
// system, so the rename is atomic) and out of the mail folders. Every run
// that opens the archive for writing empties it first.
const TmpDir = StateDir + "/tmp"

// Header is .mailmove/archive.json.
type Header struct {
	Version int    `json:"version"`
	Format  Format `json:"format"`
	LF      bool   `json:"mbox_lf,omitempty"`
	// Layout is how mbox files are laid out: "" (Parent/Child.mbox) or
	// LayoutThunderbird (Parent.sbd/Child, no extension).
	Layout  string    `json:"mbox_layout,omitempty"`
	Created time.Time `json:"created"`
	Tool    string    `json:"tool"`
	// Encryption is EncryptionAge in an encrypted archive, else "".
	Encryption string `json:"encryption,omitempty"`
	// Compression is CompressionZstd in a compressed archive, else "".
	Compression string `json:"compression,omitempty"`
	// Salt salts the tags that stand in for secrets in the clear index of
	// an encrypted archive (see Archive.MetaKey).
	Salt string `json:"salt,omitempty"`
}

// Record is one line of a folder index (.mailmove/index/<folder>.jsonl).
type Record struct {
	message.Meta
	// File is the .eml or .mbox file, relative to the archive root, with "/".
	File string `json:"file"`
	// Offset and Length locate the message in an mbox file: Offset is the
	// start of its From_ line, Length runs to the end of the empty line after
	// it. Both are 0 for .eml files.
	Offset int64 `json:"offset,omitempty"`
	Length int64 `json:"length,omitempty"`
	// Alias marks a message the server holds again (same content after a
	// UIDVALIDITY change, or the same Proton message in a second folder):
	// its bytes are stored once, where File/Offset point.
	Alias bool `json:"alias,omitempty"`
	// LabelCopy marks a copy of a Proton message kept in a Labels/... folder
	// (export --bridge-labels=folders); the message is also stored in its
	// own folder.
	LabelCopy bool `json:"label_copy,omitempty"`
	// GmailUpdate marks a FlagsUpdate line that also replaces the
	// message's gm_labels (an empty list included).
	GmailUpdate bool `json:"gm_update,omitempty"`
	// StatusAt and StatusLen locate the Status:, X-Status: and X-Keywords:
	// lines that export --mbox-status-headers added at the end of the
	// message's header in its mbox file: StatusLen bytes at offset
	// StatusAt of the message as read from the file (unquoted, line
	// endings given back). OpenMessage leaves them out; Size and SHA256 are
	// those of the server's bytes, without them.
	StatusAt  int64 `json:"status_at,omitempty"`
	StatusLen int64 `json:"status_len,omitempty"`
	// LFRawFrom, in an mbox archive with LF line endings, is where (in the
	// message as read from the file, before StatusAt/StatusLen are taken
	// out) the message had its first bare LF: from there on its bytes are
	// stored as they are, and not given back as CRLF (see mbox.Written).
	LFRawFrom *int64 `json:"lf_raw_from,omitempty"`
	// FlagsUpdate marks a line that only records new flags (and, for
	// Proton, labels) for the message of the same UIDVALIDITY and UID
	// written earlier (export --refresh-flags); Merge applies it.
	FlagsUpdate bool `json:"flags_update,omitempty"`
	// Gone marks a line that says the message of the same UIDVALIDITY and
	// UID written earlier was deleted on the server and moved to the
	// archive's deleted area (export with Mirror, see MoveDeleted); Merge
	// leaves the message out of the folder.
	Gone bool `json:"gone,omitempty"`
	// FileSize is the size of the stored file (an .eml.age, an mbox
	// segment) in an encrypted archive, so that check can see a truncated
	// file without the private key.
	FileSize int64 `json:"file_size,omitempty"`
	// Tag and FlagsSum, in the clear lines of an encrypted archive's index,
	// stand in for the content key and the flags and labels (see
	// Archive.MetaKey and Archive.FlagsTag).
	Tag      string `json:"tag,omitempty"`
	FlagsSum string `json:"flags_sum,omitempty"`
	// Sealed marks a line of an encrypted archive's index that is not a
	// record: the SealedN records after it, whole, age-encrypted and base64.
	Sealed  string `json:"sealed,omitempty"`
	SealedN int    `json:"n,omitempty"`
}

// location returns the part of r that says where and how its bytes are
// stored, for an alias record that points to them.
func (r *Record) location() Record {
	return Record{File: r.File, Offset: r.Offset, Length: r.Length, StatusAt: r.StatusAt, StatusLen: r.StatusLen, LFRawFrom: r.LFRawFrom}
}

// Merge applies the flag updates among recs to the records they update
// and returns the message records alone, in order.
func Merge(recs []Record) []Record {
	type id struct{ uv, uid uint32 }
	at := map[id]int{}
	var out []Record
	gone := map[int]bool{}
	for _, r := range recs {
		k := id{r.UIDValidity, r.UID}
		if r.Sealed != "" {
			continue
		}
		if r.Gone {
			if i, ok := at[k]; ok {
				gone[i] = true
				delete(at, k)
			}
			continue
		}
		if r.FlagsUpdate {
			if i, ok := at[k]; ok {
				out[i].Flags = r.Flags
				out[i].FlagsSum = r.FlagsSum
				if r.Labels != nil {
					out[i].Labels = r.Labels
				}
				if r.GmailUpdate {
					out[i].GmailLabels = r.GmailLabels
				}
			}
			continue
		}
		at[k] = len(out)
		out = append(out, r)
	}
	if len(gone) > 0 {
		kept := out[:0]
		for i, r := range out {
			if !gone[i] {
				kept = append(kept, r)
			}
		}
		out = kept
	}
	return out
}

// FolderState is the summary of a folder kept in .mailmove/folders.json.
type FolderState struct {
	// UIDValidity is the server's UIDVALIDITY at the last run.
	UIDValidity uint32 `json:"uidvalidity"`
	// UIDNext and Messages are the server's STATUS at the end of the last
	// complete pass; equal values mean there is nothing new.
	UIDNext  uint32 `json:"uidnext"`
	Messages uint32 `json:"messages"`
	// ModSeq is the server's HIGHESTMODSEQ (CONDSTORE) at the end of the last
	// complete pass, 0 when the server has none: equal values mean no flag
	// changed either.
	ModSeq uint64 `json:"highestmodseq,omitempty"`
	// LastUID is the highest UID (of UIDValidity) in the index.
	LastUID uint32 `json:"last_uid"`
	// Failed are UIDs below LastUID that could not be exported; the next run
	// tries them again.
	Failed []uint32 `json:"failed,omitempty"`
	// Count is the number of index records (aliases included).
	Count int64 `json:"count"`
	// IndexSize is the size of the index file when this state was written;
	// a longer file means a run stopped between index and state.
	IndexSize int64 `json:"index_size"`
	// MboxEnd is where the last indexed message ends in the folder's mbox.
	MboxEnd int64 `json:"mbox_end,omitempty"`
	// Segments is the folder name as segments.
	Segments []string `json:"segments"`
	// Path is where the folder's messages are, relative to the archive
	// root, with "/": its mbox file, or its directory of .eml files. Set by
	// the first run that writes the folder, and kept: a segment too long for
	// the file system is shortened there (see ShortenName), and this
	// records the mapping. Empty in archives written before it existed,
	// where it is MboxPath or RelPath of Segments.
	Path string `json:"path,omitempty"`
	// Attrs are the folder's LIST attributes on the server (\Sent, \Trash,
	// ...), so that an import can put it where the same role is.
	Attrs []string `json:"attrs,omitempty"`
	// SegmentFiles is the number of segment files the index names, in an
	// encrypted mbox archive; a run that finds as many skips the sweep for
	// unindexed ones.
	SegmentFiles int `json:"segment_files,omitempty"`
	// Rescan is set when UIDVALIDITY changed and the pass that matches old
	// messages by content has not finished.
	Rescan bool `json:"rescan,omitempty"`
	// MirrorUIDNext and MirrorMessages are the server's STATUS at the end
	// of the last pass that also moved the messages deleted on the server
	// to the deleted area (export with Mirror): equal values mean that
	// nothing was deleted since.
	MirrorUIDNext  uint32 `json:"mirror_uidnext,omitempty"`
	MirrorMessages uint32 `json:"mirror_messages,omitempty"`
}

// Archive is an open archive. It is safe for use by several goroutines, with
// one Folder writer per folder at a time.
type Archive struct {
	Root   string
	Header Header
	lock   *os.File

	readOnly bool

	recipients []age.Recipient // an encrypted archive being written
	identities []age.Identity  // an encrypted archive being read
	segs       segCache        // decrypting readers of segments being read

	// StatusHeaders makes the mbox messages written from now on carry
	// Status:, X-Status: and X-Keywords: lines with their flags, the way
	// mutt, Python's mailbox and Dovecot read them (export
	// --mbox-status-headers). The index records the lines' place, so that
	// OpenMessage and Check see the server's bytes.
	StatusHeaders bool

	vmu     sync.Mutex // raising Header.Version
	mu      sync.Mutex
	folders map[string]*FolderState
	dirty   bool
	pmIDs   map[string]Record // Proton internal ID -> where it is stored, loaded on demand
}

// ErrLocked is returned by Open when another process holds the archive.
var ErrLocked = errors.New("another mailmove is using this archive")

// LayoutMailmove is the default mbox layout, Parent/Child.mbox; in the
// archive header it is "".
const LayoutMailmove = "mailmove"

// LayoutThunderbird lays mbox files out as Thunderbird's Local Folders do:
// folder A is the file A (no extension), its subfolder A/B the file
// A.sbd/B.
const LayoutThunderbird = "thunderbird"

// Open opens the archive at root, creating it when it does not exist, with
// format f (checked against an existing archive). It takes the archive's
// lock, removes temporary files and cuts torn mbox tails and index lines
// left by an interrupted run.
func Open(root string, f Format, lf bool, tool string) (*Archive, error) {
	return open(context.Background(), root, f, lf, "", tool, false, 0, Sealing{})
}

// OpenLayout is Open for an mbox archive with the given layout
// (LayoutMailmove or LayoutThunderbird). A new archive gets it; an existing one must have it,
// unless layout is "": then it keeps its own.
func OpenLayout(root string, f Format, lf bool, layout, tool string) (*Archive, error) {
	return open(context.Background(), root, f, lf, layout, tool, false, 0, Sealing{})
}

// OpenWait is OpenSealed that, when another process holds the archive,
// waits up to wait for it to finish (mailmove backup --lock-wait) before it
// gives up with ErrLocked; ctx ends the wait early. The lock is a flock on
// .mailmove/lock: the kernel releases it when its holder exits, however it
// ends (kill -9 included), so a stale lock never needs to be removed.
func OpenWait(ctx context.Context, root string, f Format, lf bool, layout, tool string, s Sealing, wait time.Duration) (*Archive, error) {
	return open(ctx, root, f, lf, layout, tool, false, wait, s)
}

// OpenSealed is OpenLayout for an archive encrypted to s.Recipients and
// compressed with s.Compress, or neither: a new archive gets them, an
// existing one must have them (else a SealingError). Writing needs only
// the recipients, never a private key.
func OpenSealed(root string, f Format, lf bool, layout, tool string, s Sealing) (*Archive, error) {
	return open(context.Background(), root, f, lf, layout, tool, false, 0, s)
}

// OpenReadOnly opens an existing archive to read it (import, check): it
// changes nothing on disk, not even an interrupted run's leftovers, and
// shares the lock with other readers.
func OpenReadOnly(root string) (*Archive, error) {
	if _, err := os.Stat(filepath.Join(root, StateDir, "archive.json")); err != nil {
		return nil, fmt.Errorf("%s is not a mailmove archive (no %s)", root, filepath.Join(StateDir, "archive.json"))
	}
	return open(context.Background(), root, "", false, "", "", true, 0, Sealing{})
}

// waitLock takes the lock on f, trying again until wait has passed.
func waitLock(ctx context.Context, f *os.File, exclusive bool, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := lockFile(f, exclusive)
		if err == nil || wait <= 0 {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(left, 200*time.Millisecond)):
		}
	}
}

func open(ctx context.Context, root string, f Format, lf bool, layout, tool string, readOnly bool, wait time.Duration, s Sealing) (*Archive, error) {
	if s.Compress != "" && s.Compress != CompressionZstd {
		return nil, fmt.Errorf("unknown compression %q: the one there is is %s", s.Compress, CompressionZstd)
	}
	if readOnly {
		lock, err := os.Open(filepath.Join(root, StateDir, "lock"))
		if err != nil {
			return nil, err
		}
		if err := lockFile(lock, false); err != nil {
			lock.Close()
			return nil, fmt.Errorf("%s: %w (an export is writing to it); wait for it to finish", root, ErrLocked)
		}
		a := &Archive{Root: root, lock: lock, folders: map[string]*FolderState{}, readOnly: true}
		b, err := os.ReadFile(filepath.Join(root, StateDir, "archive.json"))
		if err == nil {
			err = json.Unmarshal(b, &a.Header)
		}
		if err == nil && a.Header.Version > knownVersion {
			err = fmt.Errorf("%s was written by a newer mailmove (archive version %d); update mailmove", root, a.Header.Version)
		}
		if err == nil {
			err = a.loadState()
		}
		if err != nil {
			a.Close()
			return nil, err
		}
		return a, nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	sd := filepath.Join(root, StateDir)
	if err := os.MkdirAll(filepath.Join(sd, "index"), 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(sd, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := waitLock(ctx, lock, true, wait); err != nil {
		lock.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if wait > 0 {
			return nil, fmt.Errorf("%s: %w, still after waiting %v (a backup or export still running?); wait for it to finish", root, ErrLocked, wait)
		}
		return nil, fmt.Errorf("%s: %w (a cron job still running?); wait for it to finish", root, ErrLocked)
	}
	a := &Archive{Root: root, lock: lock, folders: map[string]*FolderState{}, recipients: s.Recipients}
	// What an interrupted run was writing: never indexed, never needed.
	tmp := filepath.Join(root, filepath.FromSlash(TmpDir))
	if err := os.RemoveAll(tmp); err != nil {
		a.Close()
		return nil, fmt.Errorf("removing an interrupted run's temporary files: %w", err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		a.Close()
		return nil, err
	}
	hp := filepath.Join(sd, "archive.json")
	b, err := os.ReadFile(hp)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &a.Header); err != nil {
			a.Close()
			return nil, fmt.Errorf("%s is damaged: %v", hp, err)
		}
		if a.Header.Version > knownVersion {
			a.Close()
			return nil, fmt.Errorf("%s was written by a newer mailmove (archive version %d); update mailmove", root, a.Header.Version)
		}
		if f != "" && a.Header.Format != f {
			a.Close()
			return nil, &FormatError{Root: root, Have: a.Header.Format, Want: f}
		}
		if want := strings.TrimPrefix(layout, LayoutMailmove); layout != "" && a.Header.Layout != want {
			a.Close()
			have := a.Header.Layout
			if have == "" {
				have = "mailmove"
			}
			return nil, fmt.Errorf("%s is an mbox archive in the %s layout, not %s: leave out --mbox-layout to add to it, or give a new --out folder", root, have, layout)
		}
		if enc := len(s.Recipients) > 0; enc != a.Encrypted() || s.Compress != a.Header.Compression {
			a.Close()
			return nil, &SealingError{Root: root, Encrypted: a.Encrypted(), WantEncrypted: enc, Compress: a.Header.Compression, WantCompress: s.Compress}
		}
	case errors.Is(err, fs.ErrNotExist):
		if f == "" {
			a.Close()
			return nil, fmt.Errorf("%s is not a mailmove archive (no %s)", root, hp)
		}
		if entries, _ := os.ReadDir(root); len(entries) > 1 {
			a.Close()
			return nil, fmt.Errorf("%s is not empty and is not a mailmove archive; refusing to write into it: choose an empty or new folder", root)
		}
		if f != Mbox || layout == LayoutMailmove {
			layout = ""
		}
		a.Header = Header{Version: 1, Format: f, LF: lf, Layout: layout, Created: time.Now().UTC(), Tool: tool, Compression: s.Compress}
		if len(s.Recipients) > 0 {
			a.Header.Encryption, a.Header.Salt = EncryptionAge, newSalt()
		}
		if a.Header.Encryption != "" || a.Header.Compression != "" {
			a.Header.Version = 2
		}
		hb, _ := json.MarshalIndent(a.Header, "", "  ")
		if err := writeFileAtomic(hp, append(hb, '\n')); err != nil {
			a.Close()
			return nil, err
		}
	default:
		a.Close()
		return nil, err
	}
	if err := a.loadState(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// FormatError is returned when an archive holds another format than asked.
type FormatError struct {
	Root       string
	Have, Want Format
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s is a %s archive, not %s: run with --to %s to add to it, or give a new --out folder", e.Root, e.Have, e.Want, e.Have)
}

// Close releases the lock, saving the folder states first.
func (a *Archive) Close() error {
	var err error
	if !a.readOnly {
		err = a.SaveState()
	}
	if a.lock != nil {
		a.lock.Close()
		a.lock = nil
	}
	a.segs.close()
	return err
}

func (a *Archive) statePath() string { return filepath.Join(a.Root, StateDir, "folders.json") }

func (a *Archive) indexPath(folder string) string {
	return filepath.Join(a.Root, StateDir, "index", indexName(folder))
}

// loadState reads folders.json and reconciles it with the index files and
// message files, which are the truth.
func (a *Archive) loadState() error {
	b, err := os.ReadFile(a.statePath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err == nil {
		var st struct {
			Folders map[string]*FolderState `json:"folders"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("%s is damaged (%v); delete it and mailmove rebuilds it from the index", a.statePath(), err)
		}
		if st.Folders != nil {
			a.folders = st.Folders
		}
		for _, fs := range a.folders {
			if fs.Path != "" && !localPath(fs.Path) {
				fs.Path = "" // not ours: fall back to the mapping of the name
			}
		}
	}
	// Index files that folders.json does not know (a crash before the first
	// state save) are read whole.
	entries, err := os.ReadDir(filepath.Join(a.Root, StateDir, "index"))
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for name := range a.folders {
		known[indexName(name)] = true
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".jsonl") && !known[e.Name()] {
			// Learn the folder name from its first record.
			recs, _, err := readIndex(filepath.Join(a.Root, StateDir, "index", e.Name()), 0)
			for len(recs) > 0 && recs[0].Sealed != "" {
				recs = recs[1:]
			}
			if err != nil || len(recs) == 0 {
				continue
			}
			segs := strings.Split(recs[0].Folder, "/")
			a.folders[recs[0].Folder] = &FolderState{Segments: segs}
		}
	}
	for name, fs := range a.folders {
		if err := a.recoverFolder(name, fs); err != nil {
			return err
		}
	}
	if a.sealedMbox() && !a.readOnly {
		return a.sweepUnknownSegments()
	}
	return nil
}

// recoverFolder brings a folder's state up to its index, cuts a torn last
// index line and a torn mbox tail, and removes temporary files.
func (a *Archive) recoverFolder(name string, st *FolderState) error {
	ip := a.indexPath(name)
	fi, err := os.Stat(ip)
	if errors.Is(err, fs.ErrNotExist) {
		*st = FolderState{Segments: st.Segments, UIDValidity: st.UIDValidity, Path: st.Path}
		fi = nil
	} else if err != nil {
		return err
	}
	if fi != nil && fi.Size() != st.IndexSize {
		from := st.IndexSize
		if fi.Size() < from {
			// shorter than recorded: rebuild from the whole index
			from = 0
			*st = FolderState{Segments: st.Segments, Path: st.Path}
		}
		recs, good, err := readIndex(ip, from)
		if err != nil {
			return err
		}
		if good < fi.Size() && !a.readOnly {
			// a torn last line: the message it describes is not committed
			if err := os.Truncate(ip, good); err != nil {
				return err
			}
		}
		for _, r := range recs {
			st.apply(&r)
		}
		st.IndexSize = good
		a.dirty = true
	}
	if a.readOnly {
		return nil
	}
	if a.sealedMbox() {
		return a.sweepSegments(name, st)
	}
	if a.Header.Format == Mbox {
		mp := filepath.Join(a.Root, filepath.FromSlash(a.mboxFile(st)))
		if mfi, err := os.Stat(mp); err == nil && mfi.Size() > st.MboxEnd {
			if err := os.Truncate(mp, st.MboxEnd); err != nil {
				return fmt.Errorf("cutting the unfinished message at the end of %s: %w", mp, err)
			}
		}
	} else {
		// Archives written before TmpDir kept temporary files beside the
		// messages.
		dir := filepath.Join(a.Root, filepath.FromSlash(a.folderPath(st)))
		tmps, _ := filepath.Glob(filepath.Join(dir, ".mm-tmp-*"))
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	return nil
}

// folderPath is where a folder's messages are (st.Path, else the path its
// segments map to), relative to the root, with "/".
func (a *Archive) folderPath(st *FolderState) string {
	if st.Path != "" {
		return st.Path
	}
	if a.Header.Format == Mbox {
		return filepath.ToSlash(a.mboxPath(st.Segments))
	}
	return filepath.ToSlash(RelPath(st.Segments))
}

func (st *FolderState) apply(r *Record) {
	if r.FlagsUpdate || r.Gone || r.Sealed != "" {
		return
	}
	if r.UIDValidity != st.UIDValidity {
		if st.UIDValidity != 0 {
			st.Rescan = true
		}
		st.UIDValidity = r.UIDValidity
		st.LastUID = 0
		st.Failed = nil
		st.UIDNext = 0
	}
	if r.UID > st.LastUID {
		st.LastUID = r.UID
	}
	for i, f := range st.Failed {
		if f == r.UID {
			st.Failed = append(st.Failed[:i], st.Failed[i+1:]...)
			break
		}
	}
	st.Count++
	if !r.Alias && r.Length > 0 {
		if end := r.Offset + r.Length; end > st.MboxEnd {
			st.MboxEnd = end
		}
	}
}

// readIndex reads index records starting at byte offset from; it returns the
// records of whole lines and the offset just after the last whole line.
func readIndex(path string, from int64) ([]Record, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, 0, err
	}
	br := bufio.NewReaderSize(f, 1<<16)
	var out []Record
	pos := from
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var r Record
			if jerr := json.Unmarshal(line, &r); jerr != nil {
				return out, pos, fmt.Errorf("%s: damaged line at byte %d: %v", path, pos, jerr)
			}
			out = append(out, r)
			pos += int64(len(line))
		}
		if err != nil {
			if err == io.EOF {
				return out, pos, nil
			}
			return out, pos, err
		}
	}
}

// Records returns the index records of a folder, in the order written,
// with flag updates applied (see Merge).
func (a *Archive) Records(folder string) ([]Record, error) {
	recs, _, err := readIndex(a.indexPath(folder), 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	recs, err = a.unseal(recs)
	return Merge(recs), err
}

// Folders returns the names of the folders in the archive, sorted.
func (a *Archive) Folders() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for n := range a.folders {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// State returns a copy of a folder's state (zero if the folder is new).
func (a *Archive) State(folder string) FolderState {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, ok := a.folders[folder]; ok {
		c := *st
		c.Failed = append([]uint32(nil), st.Failed...)
		return c
	}
	return FolderState{}
}

// SetStatus records the server's STATUS after a complete pass over a folder,
// and the UIDs that failed.
func (a *Archive) SetStatus(folder string, segs []string, attrs []string, uidValidity, uidNext, messages uint32, modSeq uint64, failed []uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.folderLocked(folder, segs)
	if st.UIDValidity != uidValidity {
		st.UIDValidity = uidValidity
		st.LastUID = 0
	}
	st.UIDNext, st.Messages, st.ModSeq = uidNext, messages, modSeq
	st.Attrs = attrs
	st.Rescan = false
	st.Failed = append([]uint32(nil), failed...)
	a.dirty = true
}

// SetMirrored records the server's STATUS after a pass over a folder that
// moved every message deleted on the server to the deleted area.
func (a *Archive) SetMirrored(folder string, uidNext, messages uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, ok := a.folders[folder]; ok {
		st.MirrorUIDNext, st.MirrorMessages = uidNext, messages
		a.dirty = true
	}
}

func (a *Archive) folderLocked(folder string, segs []string) *FolderState {
	st, ok := a.folders[folder]
	if !ok {
		st = &FolderState{Segments: append([]string(nil), segs...)}
		a.folders[folder] = st
	}
	return st
}

// SaveState writes folders.json atomically.
func (a *Archive) SaveState() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dirty {
		return nil
	}
	b, err := json.MarshalIndent(struct {
		Folders map[string]*FolderState `json:"folders"`
	}{a.folders}, "", " ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(a.statePath(), append(b, '\n')); err != nil {
		return err
	}
	a.dirty = false
	return nil
}

// loadPMIDs reads the Proton internal IDs of every index the first time.
func (a *Archive) loadPMIDs() error {
	if a.pmIDs != nil {
		return nil
	}
	a.pmIDs = map[string]Record{}
	for name := range a.folders {
		recs, _, err := readIndex(a.indexPath(name), 0)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, r := range Merge(recs) {
			if r.PMInternalID != "" && !r.Alias && !r.LabelCopy {
				loc := r.location()
				loc.Folder = r.Folder
				a.pmIDs[r.PMInternalID] = loc
			}
		}
	}
	return nil
}

// HasPMID reports whether a message with Proton internal ID id is stored.
func (a *Archive) HasPMID(id string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.loadPMIDs(); err != nil {
		return false, err
	}
	_, ok := a.pmIDs[id]
	return ok, nil
}

// ClaimPMID records that the message with Proton internal ID id is stored at
// loc, unless it already is stored elsewhere: then it returns that record.
func (a *Archive) ClaimPMID(id string, loc Record) (*Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.loadPMIDs(); err != nil {
		return nil, err
	}
	if r, ok := a.pmIDs[id]; ok {
		return &r, nil
	}
	a.pmIDs[id] = loc
	return nil, nil
}

// writeFileAtomic writes a file through a temporary file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// localPath reports whether p (with "/") stays inside the archive and out of
// its state folder.
func localPath(p string) bool {
	p = filepath.FromSlash(p)
	return filepath.IsLocal(p) && p != StateDir && !strings.HasPrefix(p, StateDir+string(filepath.Separator))
}

// mboxFile is the file of a folder's messages in an mbox archive: its
// path, with ".zst" in a compressed archive. An encrypted mbox archive has
// segments beside it instead (see segmentName).
func (a *Archive) mboxFile(st *FolderState) string {
	p := a.folderPath(st)
	if a.Compressed() && !a.Encrypted() {
		p += ".zst"
	}
	return p
}

func nowStamp() string { return time.Now().UTC().Format("20060102T150405Z") }

func randName() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// emlName is the name of a message file in this archive: emlName, with
// .zst and .age added in a compressed and an encrypted one, where the
// SHA-256 prefix is also left out.
func (a *Archive) emlName(m *message.Meta) string {
	if a.Encrypted() {
		// the SHA-256 is a secret: it would confirm a guess of the content
		return a.storedName(m.InternalDate.UTC().Format("20060102T150405Z") + "-" + strconv.FormatUint(uint64(m.UIDValidity), 10) + "-" +
			strconv.FormatUint(uint64(m.UID), 10) + ".eml")
	}
	return a.storedName(emlName(m))
}

// emlName is the stable, sortable, collision-free name of a message file.
func emlName(m *message.Meta) string {
	return m.InternalDate.UTC().Format("20060102T150405Z") + "-" + strconv.FormatUint(uint64(m.UIDValidity), 10) + "-" +
		strconv.FormatUint(uint64(m.UID), 10) + "-" + m.SHA256[:12] + ".eml"
}

// sniffHeader reads the start of r up to the end of the header (at most
// message.MaxHeader bytes) and returns those bytes.
func sniffHeader(br *bufio.Reader) []byte {
	var buf bytes.Buffer
	for buf.Len() < message.MaxHeader {
		line, err := br.ReadSlice('\n')
		buf.Write(line)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	return buf.Bytes()
}

// require raises the archive's version to v, once: archive.json is
// rewritten (atomically, synced) before the caller writes what needs it.
func (a *Archive) require(v int) error {
	a.vmu.Lock()
	defer a.vmu.Unlock()
	if a.Header.Version >= v {
		return nil
	}
	h := a.Header
	h.Version = v
	hb, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(a.Root, StateDir, "archive.json"), append(hb, '\n')); err != nil {
		return fmt.Errorf("raising the archive to version %d: %w", v, err)
	}
	a.Header.Version = v
	return nil
}

// updates reports whether recs hold a line that is not a message.
func updates(recs []Record) bool {
	for i := range recs {
		if recs[i].FlagsUpdate || recs[i].Gone {
			return true
		}
	}
	return false
}
