package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailmove/mailmove/message"
)

// firstBackoff is the wait before the first reconnect; tests shorten it.
var firstBackoff = time.Second

// Run copies what is new from o.Source to o.Sink, brings flags up to date
// and checks the target. Failures of single messages or folders are in the
// summary; the error is what stopped the run.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Connections <= 0 {
		o.Connections = 4
	}
	if o.Labels == "" {
		o.Labels = LabelsKeywords
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	sum := &Summary{DryRun: o.DryRun, unstorable: map[string]bool{}}
	rec, _ := o.Sink.(Recorder)
	path := o.JournalPath
	if rec != nil {
		path = "" // the sink is its own record
	}
	jr, err := openJournal(path)
	if err != nil {
		return nil, fmt.Errorf("opening the journal: %w", err)
	}
	defer jr.Close()
	if pl, ok := o.Source.(Placer); ok {
		placed := jr.placed
		if pr, ok := rec.(PlacementRecorder); ok {
			// the sink is the record: where it holds each message, read
			// before the source places them
			at, err := pr.GmailPlaced(ctx)
			if err != nil {
				return nil, fmt.Errorf("reading where the target holds Gmail messages: %w", err)
			}
			placed = func(id string) string {
				if f := at[id]; f != "" {
					return f
				}
				return jr.placed(id)
			}
		}
		pl.Place(placed)
	}
	folders, err := o.Source.Folders(ctx)
	if err != nil {
		return nil, err
	}
	sum.Bridge = o.Source.Bridge()
	r := &run{o: o, sum: sum, jr: jr, rec: rec}
	var first, later []*job
	var planned int
	var plannedBytes int64
	for _, f := range folders {
		t, why := o.Sink.Target(f)
		fs := &FolderSummary{Source: f.Name, Target: t, Messages: int(f.Messages), Bytes: f.Bytes, UIDValidity: f.UIDValidity, UIDNext: f.UIDNext}
		sum.Folders = append(sum.Folders, fs)
		if why != "" {
			sum.Failed = append(sum.Failed, Failure{Folder: f.Name, Error: why})
			continue
		}
		j := &job{f: f, target: t, fs: fs, copied: map[srcKey]bool{}}
		if f.AllMail {
			later = append(later, j)
		} else {
			first = append(first, j)
		}
		// what the journal does not know yet, at most
		var n int
		if rec != nil {
			n = int(f.Messages)
			if m, ok := rec.Marked(f, t); ok {
				jr.states[f.Name] = folderState{uv: m.UIDValidity, uidNext: m.UIDNext, messages: m.Messages, modSeq: m.ModSeq, target: t, deleted: m.Deleted}
				if m.UIDValidity == f.UIDValidity {
					n -= int(m.Messages)
				}
			}
		} else {
			n = int(f.Messages) - jr.count(f.Name, f.UIDValidity)
		}
		if n > 0 {
			planned += n
			plannedBytes += f.Bytes * int64(n) / int64(f.Messages)
		}
	}
	if o.Progress != nil && !o.DryRun {
		o.Progress.Planned(planned, plannedBytes)
	}
	err = r.jobs(ctx, first)
	if err == nil && len(later) > 0 {
		if r.folderFailures > 0 {
			// Which messages are in no folder is decided only after every
			// folder was copied in full.
			for _, j := range later {
				sum.Failed = append(sum.Failed, Failure{Folder: j.f.Name, Error: "not copied in this run: a folder failed, and the messages only in All Mail are known only after every folder was copied; run again"})
			}
		} else {
			// All Mail's messages in no folder cannot have changed when
			// neither it nor any folder did
			r.othersUnchanged = sum.Check.Unchanged == len(first)
			err = r.jobs(ctx, later)
		}
	}
	if jerr := jr.sync(); err == nil && jerr != nil {
		err = jerr
	}
	for k := range sum.unstorable {
		sum.Unstorable = append(sum.Unstorable, k)
	}
	sort.Strings(sum.Unstorable)
	sort.Slice(sum.Failed, func(i, k int) bool {
		a, b := sum.Failed[i], sum.Failed[k]
		return a.Folder < b.Folder || (a.Folder == b.Folder && a.UID < b.UID)
	})
	if err == nil {
		err = ctx.Err()
	}
	return sum, err
}

type run struct {
	o   Options
	sum *Summary
	jr  *journal
	rec Recorder // the sink, when it is its own record
	// othersUnchanged: every folder but All Mail was unchanged
	othersUnchanged bool
	mu              sync.Mutex
	folderFailures  int
	progress        int64
}

type job struct {
	f      *Folder
	target string
	fs     *FolderSummary
	// copied are the messages copied in this run (guarded by run.mu): a
	// later pass finds them in the journal, but they count as copied
	copied map[srcKey]bool
}

func (r *run) jobs(ctx context.Context, jobs []*job) error {
	ch := make(chan *job)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	sort.SliceStable(jobs, func(i, k int) bool { return jobs[i].f.Messages > jobs[k].f.Messages })
	for i := 0; i < min(r.o.Connections, len(jobs)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				if err := r.folder(ctx, j); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
loop:
	for _, j := range jobs {
		errMu.Lock()
		stop := firstErr != nil
		errMu.Unlock()
		if stop {
			break
		}
		select {
		case ch <- j:
		case <-ctx.Done():
			break loop
		}
	}
	close(ch)
	wg.Wait()
	return firstErr
}

// folder copies one folder, reconnecting with backoff while it makes
// progress.
func (r *run) folder(ctx context.Context, j *job) error {
	first := firstBackoff
	if r.o.FirstBackoff > 0 {
		first = r.o.FirstBackoff
	}
	backoff := first
	attempts := 0
	mark := r.progressMark()
	settle := r.jr.isUnfinished(j.target)
	for {
		err := r.pass(ctx, j, settle)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fe *FatalError
		if errors.As(err, &fe) {
			return err
		}
		var fl *folderError
		if errors.As(err, &fl) {
			r.mu.Lock()
			r.folderFailures++
			r.sum.Failed = append(r.sum.Failed, Failure{Folder: j.f.Name, Error: fl.Error()})
			r.mu.Unlock()
			return nil
		}
		if n := r.progressMark(); n != mark {
			mark, attempts, backoff = n, 0, first
		}
		attempts++
		if attempts > 6 {
			r.mu.Lock()
			r.folderFailures++
			r.mu.Unlock()
			return fmt.Errorf("folder %s: giving up after %d reconnects: %w", j.f.Name, attempts-1, err)
		}
		r.o.Log("folder %s: %v; reconnecting in %v", j.f.Name, err, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, 30*time.Second)
		settle = true // what the cut connection sent may still be saved
	}
}

func (r *run) progressMark() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.progress
}

// folderError is a failure of one folder (the server refused to open or
// create it): reported, the others go on.
type folderError struct{ err error }

func (e *folderError) Error() string { return e.err.Error() }
func (e *folderError) Unwrap() error { return e.err }

// FolderError marks err as concerning one folder only.
func FolderError(err error) error { return &folderError{err} }

// pass is one attempt at a folder.
func (r *run) pass(ctx context.Context, j *job, settle bool) (err error) {
	o, jr, fs := r.o, r.jr, j.fs
	selKey := selString(o.Select)
	st, hadState := jr.state(j.f.Name)
	unchanged := func(uv uint32, modSeq uint64) bool {
		// (with Delete, since a pass that deleted too: a message gone
		// from the folder changes its count or, with one new, its UIDNEXT)
		return hadState && (!o.Delete || st.deleted) && st.uv == uv && st.uidNext == j.f.UIDNext && j.f.UIDNext != 0 && st.messages == j.f.Messages &&
			(modSeq != 0 && st.modSeq == modSeq || j.f.Messages == 0 || o.NoFlagSync) && st.sel == selKey && st.target == j.target &&
			(!j.f.AllMail || r.othersUnchanged)
	}
	skip := func() error {
		// Nothing new, no flag changed (CONDSTORE), checked by the run
		// that recorded this state.
		fs.Unchanged = true
		r.mu.Lock()
		r.sum.Check.Unchanged++
		r.mu.Unlock()
		return nil
	}
	if unchanged(j.f.UIDValidity, j.f.ModSeq) {
		// the listing's STATUS says so already: the folder is not even
		// opened (a no-op run costs the listing alone)
		return skip()
	}
	src, err := o.Source.Open(ctx, j.f)
	if err != nil {
		return err
	}
	defer func() { src.Close(err) }()
	uv, modSeq := src.State()
	if unchanged(uv, modSeq) {
		return skip()
	}
	deleted := o.Delete && o.Select == (Select{})
	markModSeq := modSeq
	if o.NoFlagSync {
		markModSeq = 0 // flags were not compared: the next run that does compares them
	}
	if r.rec != nil {
		if err := jr.load(ctx, r.rec, j.f, j.target); err != nil {
			return err
		}
	}
	uids, err := src.UIDs(ctx, o.Select)
	if err != nil {
		return err
	}
	known := jr.folder(j.f.Name, uv)
	// ids are the messages' IDs where the source has no stable UIDs
	// (IDReader): the journal knows its messages by ID, the UIDs of this
	// pass are mapped to them
	var ids map[uint32]string
	if idr, ok := src.(IDReader); ok {
		if ids, err = idr.IDs(ctx, uids); err != nil {
			return err
		}
		known = map[uint32]*entry{}
		byID := jr.folderIDs(j.f.Name, uv)
		var top uint32
		for _, u := range uids {
			top = max(top, u)
			if e := byID[ids[u]]; e != nil && ids[u] != "" {
				known[u] = e
				delete(byID, ids[u])
			}
		}
		// recorded messages no longer in the source: numbered past this
		// pass's UIDs (Delete)
		var gone []string
		for id := range byID {
			gone = append(gone, id)
		}
		sort.Strings(gone)
		for _, id := range gone {
			top++
			ids[top] = id
			known[top] = byID[id]
		}
	}
	sk := func(u uint32) srcKey {
		if ids != nil {
			return srcKey{j.f.Name, uv, 0, ids[u]}
		}
		return srcKey{j.f.Name, uv, u, ""}
	}
	var fresh []uint32
	live := map[uint32]bool{}
	for _, u := range uids {
		live[u] = true
		if e, ok := known[u]; !ok || e.tf != j.target {
			// new, or copied into another target folder before the
			// mapping changed: copied here
			delete(known, u)
			fresh = append(fresh, u)
		}
	}
	meta, err := src.Meta(ctx, fresh)
	var ue *UndeliveredError
	if errors.As(err, &ue) && len(ue.UIDs) > 0 {
		// messages the source would not describe: reported, the others go on
		r.mu.Lock()
		for _, u := range ue.UIDs {
			r.sum.Failed = append(r.sum.Failed, Failure{Folder: j.f.Name, UID: u, Error: "the source did not describe the message: " + ue.Error()})
		}
		r.mu.Unlock()
		err = nil
	}
	if err != nil {
		return err
	}
	var flagsNow map[uint32][]string
	if len(known) > 0 && !o.NoFlagSync {
		since := uint64(0)
		if hadState && st.uv == uv && st.modSeq != 0 && modSeq != 0 {
			since = st.modSeq
		}
		if flagsNow, err = src.Flags(ctx, since); err != nil {
			return err
		}
	}
	// the flags the target should have: the source's, and labels
	mode := o.Labels
	if ls, ok := o.Sink.(LabelSink); ok && ls.TakesLabels() {
		mode = LabelsSkip // the sink sets the labels themselves
	}
	desired := func(flags []string, key string) []string {
		if key == "id:" {
			key = ""
		}
		if key == "" || r.rec != nil {
			// a Recorder records labels beside the flags
			return union(flags, nil)
		}
		return CopyFlags(flags, o.Source.Labels(key), mode)
	}
	for _, m := range meta {
		m.Labels = o.Source.Labels(LabelKeyOf(m.PMID, m.GmailID, m.ID))
		m.Flags = desired(m.Flags, LabelKeyOf(m.PMID, m.GmailID, m.ID))
	}
	// a Gmail message recorded under another UID (it moved between All
	// Mail, Spam and Trash, or All Mail was renumbered) into this target
	// folder: the record follows it, nothing is copied again
	var rest []uint32
	for _, u := range fresh {
		m := meta[u]
		if m == nil || m.GmailID == "" {
			rest = append(rest, u)
			continue
		}
		k0, e0 := jr.byGmail(m.GmailID)
		if e0 == nil || e0.tf != j.target {
			rest = append(rest, u)
			continue
		}
		if !o.DryRun {
			jr.write(jline{T: "g", SF: k0.folder, UV: k0.uv, UID: k0.uid, ID: k0.id})
			jr.write(jline{T: "m", SF: j.f.Name, UV: uv, UID: u, TF: e0.tf, TUV: e0.tuv, TUID: e0.tuid, Key: e0.key, PM: e0.pm, GM: m.GmailID, ID: ids[u], Flags: e0.flags})
		}
		known[u] = e0
		if flagsNow == nil {
			flagsNow = map[uint32][]string{}
		}
		flagsNow[u] = meta[u].Flags
		delete(meta, u)
	}
	fresh = rest
	create := !o.DryRun && len(fresh) > 0
	w, err := o.Sink.Open(ctx, j.target, create)
	if err != nil {
		return err
	}
	defer func() { w.Close(err) }()
	fs.Create = !w.Exists()
	if settle && w.Exists() && !o.DryRun {
		w.Settle(ctx)
	}
	tuv := w.UIDValidity()
	var inv map[string][]Held
	claimed := map[uint32]bool{}
	inventory := func() error {
		if inv != nil || !w.Exists() {
			return nil
		}
		inv, err = w.Inventory(ctx)
		return err
	}
	// Copies the journal accounts for, by key: the others at the target
	// with the same key are messages this run need not send.
	liveByKey := map[string]int{}
	for u, e := range known {
		if live[u] && e.tf == j.target && e.tuv == tuv {
			liveByKey[e.key]++
			claimed[e.tuid] = true
		}
	}
	var send []uint32
	var present []*Message
	presentAt := map[uint32]uint32{} // found at the target by its bytes: there
	if len(fresh) > 0 {
		if err := inventory(); err != nil {
			return err
		}
		used := map[string]int{}
		var unsure []uint32
		for _, u := range fresh {
			m, ok := meta[u]
			if !ok {
				continue // expunged since the SEARCH
			}
			k := o.Sink.Key(m)
			if len(inv[k])-liveByKey[k]-used[k] > 0 {
				if m.MessageID == "" {
					// known by its header alone: the same header and size
					// with another body is another message
					unsure = append(unsure, u)
					continue
				}
				used[k]++
				present = append(present, m)
				continue
			}
			send = append(send, u)
			fs.CopyBytes += m.Size
		}
		if len(unsure) > 0 {
			same, err := r.sameBytes(ctx, src, w, meta, unsure, inv, claimed)
			if err != nil {
				return err
			}
			for _, u := range unsure {
				m := meta[u]
				if tuid, ok := same[u]; ok {
					used[o.Sink.Key(m)]++
					present = append(present, m)
					if tuid != 0 {
						presentAt[u] = tuid
					}
					continue
				}
				send = append(send, u)
				fs.CopyBytes += m.Size
			}
			sort.Slice(send, func(a, b int) bool { return send[a] < send[b] })
		}
	}
	fs.Copy = len(send)
	fs.Known = 0
	r.mu.Lock()
	for u := range known {
		if live[u] && !j.copied[sk(u)] {
			fs.Known++
		}
	}
	r.mu.Unlock()
	fs.Present = fs.Known + len(present)
	if o.DryRun {
		return nil
	}
	// found at the target: recorded, with a target UID not taken yet
	for _, m := range present {
		k := o.Sink.Key(m)
		tuid := presentAt[m.UID]
		for _, h := range inv[k] {
			if tuid != 0 {
				break
			}
			if !claimed[h.UID] {
				tuid = h.UID
				claimed[h.UID] = true
				break
			}
		}
		jr.write(jline{T: "m", SF: j.f.Name, UV: uv, UID: m.UID, TF: j.target, TUV: tuv, TUID: tuid, Key: o.Sink.Key(m), PM: m.PMID, GM: m.GmailID, ID: ids[m.UID], Flags: m.Flags})
		known[m.UID] = &entry{tf: j.target, tuv: tuv, tuid: tuid, key: k, pm: m.PMID, gm: m.GmailID, id: ids[m.UID], flags: []string{}}
		if flagsNow == nil {
			flagsNow = map[uint32][]string{}
		}
		flagsNow[m.UID] = m.Flags // the copy there may differ: brought in line below
	}
	r.mu.Lock()
	r.sum.AlreadyThere += len(present)
	r.mu.Unlock()
	if len(send) > 0 {
		if err := r.send(ctx, j, src, w, uv, meta, send, ids); err != nil {
			return err
		}
		tuv = w.UIDValidity()
	}
	// flags and keywords of messages copied earlier
	type change struct{ add, remove []string }
	stores := map[string][]uint32{}
	changes := map[string]change{}
	var resolve []uint32
	if r.rec != nil {
		if err := r.setFlags(j, w, known, flagsNow, live, tuv, uv); err != nil {
			return err
		}
		flagsNow = nil // done
	}
	for u, e := range known {
		now, ok := flagsNow[u]
		if !ok || !live[u] || e.tf != j.target {
			continue
		}
		want := desired(now, LabelKeyOf(e.pm, e.gm, e.id))
		add, remove := diff(e.flags, want)
		if len(add)+len(remove) == 0 {
			continue
		}
		if e.tuid == 0 || e.tuv != tuv {
			resolve = append(resolve, u)
			continue
		}
		ck := strings.Join(add, " ") + "\x00" + strings.Join(remove, " ")
		stores[ck] = append(stores[ck], u)
		changes[ck] = change{add, remove}
	}
	if len(resolve) > 0 {
		// target UIDs not known (no UIDPLUS, or the target folder was
		// renumbered): found by key
		inv = nil
		if err := inventory(); err != nil {
			return err
		}
		taken := map[uint32]bool{}
		for _, e := range known {
			if e.tuv == tuv && e.tuid != 0 {
				taken[e.tuid] = true
			}
		}
		sort.Slice(resolve, func(a, b int) bool { return resolve[a] < resolve[b] })
		for _, u := range resolve {
			e := known[u]
			for _, h := range inv[e.key] {
				if !taken[h.UID] {
					taken[h.UID] = true
					e.tuid, e.tuv = h.UID, tuv
					break
				}
			}
			if e.tuv != tuv || e.tuid == 0 {
				continue // not at the target: the check below says so
			}
			add, remove := diff([]string{}, desired(flagsNow[u], LabelKeyOf(e.pm, e.gm, e.id)))
			// the copy's flags are not known: set them all
			remove = nil
			ck := "=" + strings.Join(add, " ")
			stores[ck] = append(stores[ck], u)
			changes[ck] = change{add, remove}
		}
	}
	for ck, us := range stores {
		c := changes[ck]
		var tuids []uint32
		for _, u := range us {
			tuids = append(tuids, known[u].tuid)
		}
		for _, f := range w.Unstorable(c.add) {
			r.noteUnstorable(f)
		}
		if err := w.Store(tuids, c.add, c.remove); err != nil {
			return err
		}
		for _, u := range us {
			e := known[u]
			jr.write(jline{T: "f", SF: j.f.Name, UV: uv, UID: u, TUV: e.tuv, TUID: e.tuid, ID: ids[u], Flags: desired(flagsNow[u], LabelKeyOf(e.pm, e.gm, e.id))})
		}
		fs.FlagsUpdated += len(us)
		r.mu.Lock()
		r.sum.FlagsUpdated += len(us)
		r.mu.Unlock()
	}
	// --delete: copies of messages gone from the source; not on the word
	// of a listing shorter than the folder's count (a server still
	// filling the folder, an answer cut short): the next run looks again
	if deleted && !j.f.AllMail && uv == j.f.UIDValidity && len(uids) < int(j.f.Messages) {
		o.Log("folder %s: the source listed %d UIDs for %d messages; copies of messages gone from it are deleted next time", j.f.Name, len(uids), j.f.Messages)
		deleted = false
	}
	if deleted {
		var gone []uint32
		var goneSrc []uint32
		// a target copy a live message is recorded at is not deleted (a
		// file source's message recorded again under a new ID)
		held := map[uint32]bool{}
		for u, e := range known {
			if live[u] && e.tuv == tuv {
				held[e.tuid] = true
			}
		}
		for u, e := range known {
			if held[e.tuid] {
				continue
			}
			if pl, ok := o.Source.(Placer); ok && pl.Placing() && (e.gm == "" || pl.Holds(e.gm)) {
				// a Gmail message that moved: not gone; one recorded
				// without its Gmail ID cannot be told gone
				continue
			}
			if !live[u] && e.tf == j.target && e.tuv == tuv && e.tuid != 0 {
				gone = append(gone, e.tuid)
				goneSrc = append(goneSrc, u)
			}
		}
		if len(gone) > 0 {
			if err := w.Delete(gone); err != nil {
				return err
			}
			for _, u := range goneSrc {
				jr.write(jline{T: "g", SF: j.f.Name, UV: uv, UID: u, ID: ids[u]})
			}
			fs.Deleted += len(gone)
			r.mu.Lock()
			r.sum.Deleted += len(gone)
			r.mu.Unlock()
		}
	}
	// the cheap check: every source message's key at the target
	inv = nil
	if err := inventory(); err != nil {
		return err
	}
	need := map[string]int{}
	for _, u := range uids {
		if e := jr.get(sk(u)); e != nil {
			need[e.key]++
		} else if m := meta[u]; m != nil && !r.failedUID(j.f.Name, u) {
			need[o.Sink.Key(m)]++ // not recorded: must be there all the same
		}
	}
	missing := 0
	for k, n := range need {
		if d := n - len(inv[k]); d > 0 {
			missing += d
			r.mu.Lock()
			r.sum.Check.Missing = append(r.sum.Check.Missing, Failure{Folder: j.f.Name, Error: fmt.Sprintf("%d copies of %s not in %s", d, k, j.target)})
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	r.sum.Check.Folders++
	r.sum.Check.Messages += len(uids)
	failedHere, folderFailed := false, false
	failedUIDs := map[uint32]bool{}
	for _, f := range r.sum.Failed {
		if f.Folder == j.f.Name {
			failedHere = true
			if f.UID != 0 {
				failedUIDs[f.UID] = true
			} else {
				folderFailed = true
			}
		}
	}
	r.mu.Unlock()
	journaled := 0
	var failedList []uint32
	for _, u := range uids {
		if jr.get(sk(u)) != nil {
			journaled++
		} else if failedUIDs[u] {
			failedList = append(failedList, u)
		}
	}
	if missing == 0 && !failedHere && journaled == len(uids) {
		jr.write(jline{T: "st", SF: j.f.Name, UV: uv, UIDNext: j.f.UIDNext, Messages: j.f.Messages, ModSeq: markModSeq, Sel: selKey, TF: j.target, Del: deleted})
	}
	if r.rec != nil && missing == 0 && journaled+len(failedList) == len(uids) && selKey == "" && j.f.UIDValidity == uv &&
		!folderFailed && len(failedList) == len(failedUIDs) {
		// a Recorder keeps the UIDs that failed with the state (a pass
		// with failures is not taken as unchanged by the next run)
		if err := r.rec.SetMark(j.f, j.target, Mark{UIDValidity: uv, UIDNext: j.f.UIDNext, Messages: j.f.Messages, ModSeq: markModSeq, Failed: failedList, Deleted: deleted}); err != nil {
			var fl *folderError
			if errors.As(err, &fl) {
				return err // this folder only (the archive could not make it)
			}
			return &FatalError{err}
		}
	}
	return jr.sync()
}

// setFlags brings the flags and labels a Recorder holds of messages copied
// earlier up to date, comparing its FlagsSum.
func (r *run) setFlags(j *job, w FolderWriter, known map[uint32]*entry, flagsNow map[uint32][]string, live map[uint32]bool, tuv, uv uint32) error {
	rw, ok := w.(RecordWriter)
	if !ok || len(flagsNow) == 0 {
		return nil
	}
	us := make([]uint32, 0, len(known))
	for u := range known {
		us = append(us, u)
	}
	sort.Slice(us, func(a, b int) bool { return us[a] < us[b] })
	n := 0
	for _, u := range us {
		e := known[u]
		now, ok := flagsNow[u]
		if !ok || !live[u] || e.tf != j.target || e.tuv != tuv || e.tuid == 0 {
			continue
		}
		lk := LabelKey(e.pm, e.gm)
		labels := r.o.Source.Labels(lk)
		want := union(now, nil)
		sum := r.rec.FlagsSum(want, lk, labels)
		if sum == e.sum {
			continue
		}
		if err := rw.SetFlags(e.tuid, want, lk, labels); err != nil {
			return err
		}
		r.jr.write(jline{T: "f", SF: j.f.Name, UV: uv, UID: u, TUV: e.tuv, TUID: e.tuid, Flags: want, Sum: sum})
		n++
	}
	j.fs.FlagsUpdated += n
	r.mu.Lock()
	r.sum.FlagsUpdated += n
	r.mu.Unlock()
	return nil
}

// failedUID reports whether a message was reported as failed in this run.
func (r *run) failedUID(folder string, uid uint32) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.sum.Failed {
		if f.Folder == folder && f.UID == uid {
			return true
		}
	}
	return false
}

func (r *run) noteUnstorable(f string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sum.unstorable[f] = true
}

func selString(s Select) string {
	if s == (Select{}) {
		return ""
	}
	return s.Since.Format(time.DateOnly) + ".." + s.Before.Format(time.DateOnly)
}

// send streams the messages from the source folder into the target folder.
// Every UID is accounted for: copied, refused (reported), or, when the
// connection drops, left for the next pass.
func (r *run) send(ctx context.Context, j *job, src FolderReader, w FolderWriter, uv uint32, meta map[uint32]*Message, send []uint32, ids map[uint32]string) error {
	o, jr := r.o, r.jr
	if err := jr.bracket(j.target, true); err != nil {
		return &FatalError{err}
	}
	var mu sync.Mutex
	var retry []uint32
	var fatal, lost error
	var keep *keeper
	if o.Keep != nil {
		var err error
		if keep, err = openKeeper(ctx, o.Keep, j.f); err != nil {
			return &FatalError{fmt.Errorf("the second copy (%s): %w", j.f.Name, err)}
		}
		defer keep.close()
	}
	done := func(m *Message, undecryptable *message.DecryptScanner) PutFunc {
		return func(uid, tuv uint32, err error) {
			var re *RefusedError
			var fe *FatalError
			switch {
			case err == nil:
				jr.write(jline{T: "m", SF: j.f.Name, UV: uv, UID: m.UID, TF: j.target, TUV: tuv, TUID: uid, Key: o.Sink.Key(m), PM: m.PMID, GM: m.GmailID, ID: ids[m.UID], Flags: m.Flags})
				r.mu.Lock()
				if ids != nil {
					j.copied[srcKey{j.f.Name, uv, 0, ids[m.UID]}] = true
				} else {
					j.copied[srcKey{j.f.Name, uv, m.UID, ""}] = true
				}
				r.sum.Copied++
				r.sum.Bytes += m.Size
				j.fs.Copied++
				r.progress++
				if j.f.AllMail {
					r.sum.AllMailOnly++
				}
				if undecryptable != nil && undecryptable.Found {
					r.sum.Undecryptable = append(r.sum.Undecryptable, Failure{Folder: j.f.Name, UID: m.UID,
						Error: "Proton Mail Bridge could not decrypt this message; the target holds what Bridge served"})
				}
				r.mu.Unlock()
				if o.Progress != nil {
					o.Progress.Message(j.f.Name, m.Size)
				}
			case errors.Is(err, ErrBatchRefused):
				mu.Lock()
				retry = append(retry, m.UID)
				mu.Unlock()
			case errors.As(err, &re):
				r.mu.Lock()
				r.sum.Failed = append(r.sum.Failed, Failure{Folder: j.f.Name, UID: m.UID, Error: "the target refused it: " + re.Reason})
				r.mu.Unlock()
			case errors.As(err, &fe):
				mu.Lock()
				if fatal == nil {
					fatal = err
				}
				mu.Unlock()
			default:
				// the connection dropped before the answer: the next pass
				// finds out whether the message arrived
				mu.Lock()
				if lost == nil {
					lost = err
				}
				mu.Unlock()
			}
		}
	}
	put := func(single bool) BodyFunc {
		return func(uid uint32, body io.Reader, size int64) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			m := meta[uid]
			if m == nil || m.Size != size {
				if m == nil {
					return nil
				}
				c := *m
				c.Size = size // the literal is what counts
				m = &c
			}
			for _, f := range w.Unstorable(m.Flags) {
				r.noteUnstorable(f)
			}
			var scan *message.DecryptScanner
			if r.sum.Bridge {
				scan = &message.DecryptScanner{}
				body = io.TeeReader(body, scan)
			}
			var tee *teeState
			if keep != nil && keep.wants(m) {
				tee = startTee(keep.put(ctx), m)
				body = io.TeeReader(body, tee.pw)
			}
			err := w.Put(ctx, m, body, done(m, scan))
			if tee != nil {
				if terr := tee.finish(body, err); err == nil && terr != nil {
					err = &FatalError{terr}
				}
			}
			if err != nil {
				return err
			}
			if single {
				return w.Flush()
			}
			return nil
		}
	}
	delivered, ferr := src.Fetch(ctx, send, put(false))
	var ue *UndeliveredError
	if errors.As(ferr, &ue) {
		ferr = nil // what did not come is asked for again below, alone
	}
	if err := w.Flush(); ferr == nil {
		ferr = err
	}
	if fatal != nil {
		return fatal
	}
	if ferr != nil {
		return ferr
	}
	if lost != nil {
		return fmt.Errorf("the target's connection dropped before it answered: %w", lost)
	}
	var undelivered []uint32
	for _, u := range send {
		if !delivered[u] {
			undelivered = append(undelivered, u)
		}
	}
	// one at a time: a batch the server refused, and what the source did
	// not deliver
	again := append(retry, undelivered...)
	retry = nil
	if len(again) > 0 {
		sort.Slice(again, func(a, b int) bool { return again[a] < again[b] })
		got, err := src.Fetch(ctx, again, put(true))
		reasons := map[uint32]string{}
		if errors.As(err, &ue) {
			// one message refused fails the whole FETCH: each alone
			err = nil
			for _, u := range again {
				if got[u] {
					continue
				}
				one, err1 := src.Fetch(ctx, []uint32{u}, put(true))
				if errors.As(err1, &ue) {
					reasons[u], err1 = ue.Error(), nil
				}
				if err1 != nil {
					return err1
				}
				if one[u] {
					got[u] = true
				}
			}
		}
		if err != nil {
			return err
		}
		if fatal != nil {
			return fatal
		}
		if lost != nil {
			return fmt.Errorf("the target's connection dropped before it answered: %w", lost)
		}
		for _, u := range again {
			if !got[u] {
				why := "the source did not deliver the message"
				if reasons[u] != "" {
					why += ": " + reasons[u]
				}
				r.mu.Lock()
				r.sum.Failed = append(r.sum.Failed, Failure{Folder: j.f.Name, UID: u, Error: why})
				r.mu.Unlock()
			}
		}
		for _, u := range retry {
			r.mu.Lock()
			r.sum.Failed = append(r.sum.Failed, Failure{Folder: j.f.Name, UID: u, Error: "the target refused it"})
			r.mu.Unlock()
		}
	}
	if keep != nil {
		if err := keep.flush(); err != nil {
			return &FatalError{fmt.Errorf("the second copy (%s): %w", j.f.Name, err)}
		}
	}
	if err := jr.bracket(j.target, false); err != nil {
		return &FatalError{err}
	}
	return nil
}

// keeper writes a second copy of the messages copied into a folder
// (Options.Keep).
type keeper struct {
	s    Sink
	w    FolderWriter
	inv  map[string][]Held
	used map[string]int
	mu   sync.Mutex
	err  error
}

func openKeeper(ctx context.Context, s Sink, f *Folder) (*keeper, error) {
	t, why := s.Target(f)
	if why != "" {
		return nil, errors.New(why)
	}
	w, err := s.Open(ctx, t, true)
	if err != nil {
		return nil, err
	}
	k := &keeper{s: s, w: w, used: map[string]int{}}
	if k.inv, err = w.Inventory(ctx); err != nil {
		w.Close(err)
		return nil, err
	}
	return k, nil
}

// wants reports whether m is not in the second copy yet (and counts it in).
func (k *keeper) wants(m *Message) bool {
	key := k.s.Key(m)
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.inv[key])-k.used[key] > 0 {
		k.used[key]++
		return false
	}
	return true
}

func (k *keeper) put(ctx context.Context) func(m *Message, body io.Reader) error {
	return func(m *Message, body io.Reader) error {
		return k.w.Put(ctx, m, body, func(_, _ uint32, err error) {
			if err != nil {
				k.mu.Lock()
				if k.err == nil {
					k.err = err
				}
				k.mu.Unlock()
			}
		})
	}
}

func (k *keeper) flush() error {
	err := k.w.Flush()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		err = k.err
	}
	return err
}

func (k *keeper) close() {
	k.w.Close(k.flush())
}

// teeState copies a message to the second copy (Options.Keep) through a
// pipe, in a goroutine.
type teeState struct {
	pw   *io.PipeWriter
	errc chan error
}

func startTee(fn func(*Message, io.Reader) error, m *Message) *teeState {
	pr, pw := io.Pipe()
	t := &teeState{pw: pw, errc: make(chan error, 1)}
	go func() {
		err := fn(m, pr)
		pr.CloseWithError(err)
		io.Copy(io.Discard, pr)
		t.errc <- err
	}()
	return t
}

// finish reads what the sink left of body (through the tee) and waits for
// the tee; a message the sink failed on is not kept.
func (t *teeState) finish(body io.Reader, putErr error) error {
	if putErr == nil {
		if _, err := io.Copy(io.Discard, body); err != nil {
			putErr = err
		}
	}
	if putErr != nil {
		t.pw.CloseWithError(putErr)
		<-t.errc
		return nil
	}
	t.pw.Close()
	return <-t.errc
}

// IsFolderError reports whether err concerns one folder only (the source
// refused to open it): the other folders can go on.
func IsFolderError(err error) bool {
	var fl *folderError
	return errors.As(err, &fl)
}

// sameBytes decides, for source messages without Message-ID whose key (the
// header's SHA-256 and the size) the target holds, which are there: those
// whose bytes have the SHA-256 of a copy the target holds under that key
// and no other message took (their target UID in the result). The others
// are not there. A sink that cannot give its copies' hashes (it rebuilds
// what it takes: Proton Mail Bridge, Gmail) leaves the key as the answer
// (target UID 0: the first free one).
func (r *run) sameBytes(ctx context.Context, src FolderReader, w FolderWriter, meta map[uint32]*Message, uids []uint32, inv map[string][]Held, claimed map[uint32]bool) (map[uint32]uint32, error) {
	out := map[uint32]uint32{}
	ch, ok := w.(ContentHasher)
	var held []uint32
	seen := map[uint32]bool{}
	for _, u := range uids {
		for _, h := range inv[r.o.Sink.Key(meta[u])] {
			if !claimed[h.UID] && !seen[h.UID] {
				seen[h.UID] = true
				held = append(held, h.UID)
			}
		}
	}
	var theirs map[uint32]string
	if ok {
		var err error
		if theirs, ok, err = ch.Hashes(ctx, held); err != nil {
			return nil, err
		}
	}
	if !ok {
		for _, u := range uids {
			out[u] = 0
		}
		return out, nil
	}
	mine := map[uint32]string{}
	_, err := src.Fetch(ctx, uids, func(uid uint32, body io.Reader, size int64) error {
		h := sha256.New()
		if _, err := io.Copy(h, body); err != nil {
			return err
		}
		mine[uid] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	var ue *UndeliveredError
	if err != nil && !errors.As(err, &ue) {
		return nil, err
	}
	// (a message the source did not send is taken as not there: the copy
	// asks for it again and reports it if it still does not come)
	for _, u := range uids {
		sum, got := mine[u]
		if !got {
			continue
		}
		for _, h := range inv[r.o.Sink.Key(meta[u])] {
			if !claimed[h.UID] && theirs[h.UID] == sum {
				claimed[h.UID] = true
				out[u] = h.UID
				break
			}
		}
	}
	return out, nil
}
