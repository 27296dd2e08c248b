// Package export is mailmove's export: an IMAP account (or Proton Mail
// Bridge, or Gmail) into an archive, byte for byte and with its metadata.
// It holds both ends for the copy engine (package engine): IMAPSource, the
// account as an engine Source (with Bridge's and Gmail's rules), and
// ArchiveSink, the archive as an engine Sink (formats/archive); Run is
// engine.Run from the one into the other. Runs are incremental (only what
// is new is fetched; unchanged folders are not opened) and resumable: an
// interrupted run leaves the archive consistent, and the next run finishes
// the job without writing anything twice. A Gmail account is read with
// Gmail's model (gmailsource.go): each message once, its labels and thread
// in the index.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/message"
)

// LabelMode says what to do with Proton labels (Bridge's Labels/... folders).
type LabelMode string

const (
	// LabelsAsMetadata records labels in each message's metadata and does
	// not export the Labels/... folders as copies (the default).
	LabelsAsMetadata LabelMode = "metadata"
	// LabelsAsFolders exports Labels/... folders as folders of their own.
	LabelsAsFolders LabelMode = "folders"
)

// Options configure a run.
type Options struct {
	// Account is where the mail comes from.
	Account *account.Config
	// Conn, if set, is a connection to Account already logged in (the
	// command dials first, so that a failed login creates no archive);
	// Run uses it as its first connection and closes it.
	Conn *account.Conn
	// Archive is where it goes.
	Archive *archive.Archive
	// Include and Exclude are glob patterns (path.Match, "/" between
	// segments) on folder paths; empty Include means every folder.
	Include, Exclude []string
	// Connections is the most IMAP connections used at once (default 4).
	Connections int
	// Labels applies to Proton Mail Bridge accounts.
	Labels LabelMode
	// RefreshFlags compares the flags of messages already archived with the
	// server's and records the changes. It costs one FLAGS fetch per folder
	// and run, so unchanged folders are no longer skipped.
	RefreshFlags bool
	// ChunkSize is how many messages are asked for in one UID FETCH (Gmail
	// accounts; elsewhere 1000).
	ChunkSize int
	// Mirror moves the archived messages that are gone from the server
	// (their UID is no longer in a folder whose UIDVALIDITY did not change)
	// to the archive's deleted area (archive.MoveDeleted); nothing is
	// erased. It costs one UID SEARCH per folder that changed.
	Mirror bool
	// Progress, if set, is told about progress.
	Progress Progress
	// Log, if set, receives warnings (reconnects, retries).
	Log func(format string, args ...any)
	// GmailLabels applies to Gmail accounts (X-GM-EXT-1); see gmail.go.
	GmailLabels GmailLabelMode
	// Budget, if set, is --max-bytes-per-day: the run stops with an
	// *account.CapError before a message would cross it (Gmail accounts).
	Budget *account.DailyBudget
}

// Progress receives progress reports (see message.Progress).
type Progress = message.Progress

// Failure is a message that could not be exported.
type Failure struct {
	Folder string `json:"folder"`
	UID    uint32 `json:"uid"`
	Error  string `json:"error"`
}

// Summary is what a run did.
type Summary struct {
	Folders    int   `json:"folders"`
	Messages   int   `json:"messages"`
	Bytes      int64 `json:"bytes"`
	Duplicates int   `json:"duplicates"`
	// Examined counts the folders that were opened (the others had not
	// changed since the last run).
	Examined int `json:"examined"`
	// FlagsUpdated counts archived messages whose flags changed (RefreshFlags).
	FlagsUpdated int       `json:"flags_updated,omitempty"`
	Failed       []Failure `json:"failed"`
	// Undecryptable lists messages Proton Mail Bridge could not decrypt:
	// they are archived as Bridge served them (a placeholder around the
	// encrypted data), and reported.
	Undecryptable []Failure `json:"undecryptable,omitempty"`
	Bridge        bool      `json:"bridge"`
	// Gmail is set when the account was exported the Gmail way (each
	// message once, its labels in the index; see gmail.go).
	Gmail bool `json:"gmail,omitempty"`
	// AllMailOnly counts the messages stored into the archive folder "All
	// Mail" because Bridge shows them in no folder (Bridge only; they are
	// among Messages).
	AllMailOnly int `json:"all_mail_only,omitempty"`
	// Excluded counts the messages of Bridge's All Mail (and, with
	// LabelsAsFolders, of Labels/...) left out because they are in a
	// folder that --folder/--exclude left out.
	Excluded int `json:"excluded,omitempty"`
	// BridgeSyncing is set when Bridge's All Mail count changed during the
	// run: Bridge was probably still syncing, and a later run will find more.
	BridgeSyncing bool `json:"bridge_syncing,omitempty"`
	// Mirrored counts the archived messages found deleted on the server
	// and moved to the archive's deleted area (Options.Mirror).
	Mirrored int           `json:"moved_to_deleted,omitempty"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// job is one folder to export.
type job struct {
	f       *account.Folder
	name    string   // archive folder name ("/"-joined)
	segs    []string // archive folder segments
	orphans bool     // Bridge All Mail: only messages in no folder
	labels  bool     // Bridge Labels/... exported as folders: copies, not deduplicated
}

// realFolder is a Bridge mailbox that is a folder (INBOX, Sent, Folders/...),
// not a view (All Mail, Starred, Labels/...), whether it is exported or not.
type realFolder struct {
	f        *account.Folder
	name     string // archive folder name
	selected bool
}

// firstBackoff is the wait before the first reconnect; tests shorten it.
var firstBackoff = time.Second

type exporter struct {
	o      Options
	bridge bool

	// Bridge: every folder that is not a view, exported or not, and what a
	// complete pass over them found (see folderIDs).
	real   []realFolder
	idMu   sync.Mutex
	idDone map[string]map[uint32]string // mailbox name -> UID -> X-Pm-Internal-Id
	ids    map[string]bool              // X-Pm-Internal-Id -> in an exported folder
}

// Planned is one folder an export writes.
type Planned struct {
	// Folder is the server's folder.
	Folder *account.Folder
	// Name is the folder's name in the archive ("/" between levels).
	Name string
	// AllMail is set for Proton Mail Bridge's All Mail: only its messages
	// that are in no folder are exported (into the archive folder "All
	// Mail").
	AllMail bool
	// LabelCopies is set for Bridge's Labels/... exported as folders.
	LabelCopies bool
}

// PlanFolders lists the folders that will be exported, with their archive
// names, INBOX first, then sorted by server name.
func PlanFolders(folders []*account.Folder, bridge bool, labels LabelMode, include, exclude []string) []Planned {
	e := &exporter{o: Options{Include: include, Exclude: exclude, Labels: labels}, bridge: bridge}
	jobs, _, allMail, _ := e.plan(folders)
	var out []Planned
	for _, j := range jobs {
		out = append(out, Planned{Folder: j.f, Name: j.name, LabelCopies: j.labels})
	}
	if allMail != nil {
		out = append(out, Planned{Folder: allMail.f, Name: allMail.name, AllMail: true})
	}
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i].Folder.Path(), out[k].Folder.Path()
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
	return out
}

// plan decides which folders are exported, under which names; for Bridge it
// also returns the label mailboxes, All Mail, and every folder that is not
// a view (exported or not).
func (e *exporter) plan(folders []*account.Folder) (jobs []*job, labelBoxes []*account.Folder, allMail *job, real []realFolder) {
	for _, f := range folders {
		if !f.Selectable() {
			continue
		}
		segs := f.Segments
		if e.bridge {
			switch {
			case f.Has(imap.MailboxAttrAll) || f.Name == "All Mail":
				if e.selected(f.Path()) {
					allMail = &job{f: f, name: f.Path(), segs: segs, orphans: true}
				}
				continue
			case f.Has(imap.MailboxAttrFlagged) || f.Name == "Starred" || f.Name == "Scheduled":
				labelBoxes = append(labelBoxes, f)
				continue
			case len(segs) > 1 && segs[0] == "Labels":
				labelBoxes = append(labelBoxes, f)
				if e.o.Labels == LabelsAsFolders && e.selected(f.Path()) {
					jobs = append(jobs, &job{f: f, name: f.Path(), segs: segs, labels: true})
				}
				continue
			case len(segs) > 1 && segs[0] == "Folders":
				segs = segs[1:]
			}
		}
		name := strings.Join(segs, "/")
		sel := e.selected(name) || e.selected(f.Path())
		if e.bridge {
			real = append(real, realFolder{f: f, name: name, selected: sel})
		}
		if !sel {
			continue
		}
		jobs = append(jobs, &job{f: f, name: name, segs: segs})
	}
	return jobs, labelBoxes, allMail, real
}

// Selected reports whether folder p is selected by --folder globs include
// and --exclude globs exclude, as export selects folders.
func Selected(p string, include, exclude []string) bool {
	e := &exporter{o: Options{Include: include, Exclude: exclude}}
	return e.selected(p)
}

func (e *exporter) selected(p string) bool {
	match := func(pats []string) bool {
		for _, pat := range pats {
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
			// "A" also selects everything below A
			if ok, _ := path.Match(pat+"/*", p); ok && !strings.ContainsAny(pat, "*?[") {
				return true
			}
		}
		return false
	}
	if len(e.o.Include) > 0 && !match(e.o.Include) {
		return false
	}
	return !match(e.o.Exclude)
}

// fatal marks errors that stop the whole run (disk, archive).
type fatal struct{ err error }

func (f fatal) Error() string { return f.err.Error() }
func (f fatal) Unwrap() error { return f.err }

// UnaccountedError says that Proton Mail Bridge did not give the
// X-Pm-Internal-Id of some messages it holds, so which messages of All Mail
// are in no folder (or in an excluded one) could not be decided. The folder
// that needed it is reported and its pass runs again next time.
type UnaccountedError struct {
	Mailbox string
	UIDs    []uint32
}

func (e *UnaccountedError) Error() string {
	u := fmt.Sprint(e.UIDs)
	if len(e.UIDs) > 10 {
		u = fmt.Sprint(e.UIDs[:10]) + "..."
	}
	return fmt.Sprintf("Proton Mail Bridge did not give the X-Pm-Internal-Id of %d messages of %q (UIDs %s), so which messages are in no folder is not known: nothing was stored for them, and the next run looks again", len(e.UIDs), e.Mailbox, u)
}

// folderIDs returns the X-Pm-Internal-Id of every message in every Bridge
// folder that is not a view, exported or not, mapped to whether one of its
// folders is exported. It is built once per run, folder by folder (a
// folder whose pass was cut is read again), and only from passes in which
// every UID of the folder was accounted for.
func (e *exporter) folderIDs(ctx context.Context, c *account.Conn) (map[string]bool, error) {
	e.idMu.Lock()
	defer e.idMu.Unlock()
	if e.ids != nil {
		return e.ids, nil
	}
	if e.idDone == nil {
		e.idDone = map[string]map[uint32]string{}
	}
	for _, rf := range e.real {
		if _, ok := e.idDone[rf.f.Name]; ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := e.folderIDsOf(c, rf)
		if err != nil {
			return nil, err
		}
		e.idDone[rf.f.Name] = m
	}
	ids := map[string]bool{}
	for _, rf := range e.real {
		for _, id := range e.idDone[rf.f.Name] {
			if id != "" {
				ids[id] = ids[id] || rf.selected
			}
		}
	}
	e.ids = ids
	return ids, nil
}

// folderIDsOf reads the X-Pm-Internal-Id of every message of one folder:
// from the archive for the UIDs it holds, from the server for the others.
func (e *exporter) folderIDsOf(c *account.Conn, rf realFolder) (map[uint32]string, error) {
	sel, err := c.Examine(rf.f.Name)
	if err != nil {
		return nil, err
	}
	out := map[uint32]string{}
	if sel.NumMessages == 0 {
		return out, nil
	}
	uids, err := c.UIDsAbove(0)
	if err != nil {
		return nil, err
	}
	known := map[uint32]string{}
	if e.o.Archive != nil {
		recs, err := e.o.Archive.Records(rf.name)
		if err != nil {
			return nil, fatal{err}
		}
		for _, r := range recs {
			if r.UIDValidity == sel.UIDValidity && r.PMInternalID != "" {
				known[r.UID] = r.PMInternalID
			}
		}
	}
	var need []uint32
	for _, u := range uids {
		if id, ok := known[u]; ok {
			out[u] = id
		} else {
			need = append(need, u)
		}
	}
	got, err := idsOf(c, rf.f.Name, need)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, got)
	return out, nil
}

// idsOf fetches the X-Pm-Internal-Id of uids in the open mailbox. Every UID
// is accounted for: a UID the server did not answer for must be gone (a
// UID SEARCH says so), else the result is an UnaccountedError.
func idsOf(c *account.Conn, mailbox string, uids []uint32) (map[uint32]string, error) {
	out := map[uint32]string{}
	for i := 0; i < len(uids); i += 5000 {
		got, err := c.FetchHeaderFieldOf("X-Pm-Internal-Id", uids[i:min(i+5000, len(uids))])
		if err != nil {
			return nil, err
		}
		maps.Copy(out, got)
	}
	var missing []uint32
	for _, u := range uids {
		if _, ok := out[u]; !ok {
			missing = append(missing, u)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	still, err := c.UIDsIn(missing)
	if err != nil {
		return nil, err
	}
	if len(still) > 0 {
		return nil, &UnaccountedError{Mailbox: mailbox, UIDs: still}
	}
	return out, nil
}

// AllMailOnly counts, on a Proton Mail Bridge account, the messages of All
// Mail that are in no folder, which an export with these options stores into
// the archive folder "All Mail", and those it leaves out because their
// folders are excluded. It is 0, 0 when All Mail is not exported.
func AllMailOnly(c *account.Conn, folders []*account.Folder, labels LabelMode, include, exclude []string) (n, excluded int, err error) {
	e := &exporter{o: Options{Include: include, Exclude: exclude, Labels: labels}, bridge: true}
	_, _, allMail, real := e.plan(folders)
	if allMail == nil {
		return 0, 0, nil
	}
	e.real = real
	sel, err := c.Examine(allMail.f.Name)
	if err != nil || sel.NumMessages == 0 {
		return 0, 0, err
	}
	uids, err := c.UIDsAbove(0)
	if err != nil {
		return 0, 0, err
	}
	ids, err := idsOf(c, allMail.f.Name, uids)
	if err != nil {
		return 0, 0, err
	}
	inFolders, err := e.folderIDs(context.Background(), c)
	if err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		selected, inFolder := inFolders[id]
		switch {
		case id == "" || !inFolder:
			n++
		case !selected:
			excluded++
		}
	}
	return n, excluded, nil
}

// isConnErr reports whether the connection is unusable after err.
func isConnErr(c *account.Conn, err error) bool {
	select {
	case <-c.Closed():
		return true
	default:
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return false
	}
	// go-imap closes a connection it cannot read any more (a cut in the
	// middle of a response shows as a parse error), a moment later
	select {
	case <-c.Closed():
		return true
	case <-time.After(200 * time.Millisecond):
	}
	var re *account.ReadError
	var ne net.Error
	return errors.As(err, &re) || errors.Is(err, account.ErrShortLiteral) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) || (errors.As(err, &ne) && ne.Timeout())
}
