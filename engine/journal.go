package engine

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
)

// The journal of a (source, sink) pair: one JSON object a line, appended.
// Kinds of line ("t"):
//
//	"m"  a message at the target: source folder, UIDVALIDITY, UID, target
//	     folder, UIDVALIDITY, UID (0 when unknown), key, flags as copied
//	"f"  new flags of a message recorded earlier (the last line wins)
//	"g"  a message deleted at the target (Delete): forget it
//	"s"  appends into a target folder begin; "e" they ended
//	"st" a source folder's state after a pass that finished
type jline struct {
	T     string   `json:"t"`
	SF    string   `json:"sf,omitempty"`
	UV    uint32   `json:"uv,omitempty"`
	UID   uint32   `json:"uid,omitempty"`
	TF    string   `json:"tf,omitempty"`
	TUV   uint32   `json:"tuv,omitempty"`
	TUID  uint32   `json:"tuid,omitempty"`
	Key   string   `json:"key,omitempty"`
	PM    string   `json:"pm,omitempty"`
	GM    string   `json:"gm,omitempty"`
	Flags []string `json:"flags,omitempty"`
	// ID is the message's ID (an IDReader's message): the line is keyed
	// by it, UID is only informative.
	ID string `json:"id,omitempty"`
	// Sum is a Recorder's FlagsSum (never written: a Recorder keeps no
	// journal file)
	Sum string `json:"-"`
	// folder state ("st")
	UIDNext  uint32 `json:"uidnext,omitempty"`
	Messages uint32 `json:"n,omitempty"`
	ModSeq   uint64 `json:"modseq,omitempty"`
	Sel      string `json:"sel,omitempty"`
	// Del: the pass deleted at the target too (Options.Delete)
	Del bool `json:"del,omitempty"`
}

type srcKey struct {
	folder string
	uv     uint32
	uid    uint32
	// id is the message's ID (an IDReader's message; uid is 0 then)
	id string
}

// keyOf is the key of a journal line.
func (l jline) keyOf() srcKey {
	if l.ID != "" {
		return srcKey{l.SF, l.UV, 0, l.ID}
	}
	return srcKey{l.SF, l.UV, l.UID, ""}
}

// entry is what the journal knows of one copied message.
type entry struct {
	tf    string
	tuv   uint32
	tuid  uint32
	key   string
	pm    string
	gm    string
	id    string
	flags []string
	sum   string // Recorder sinks: the FlagsSum recorded
}

type folderState struct {
	uv, uidNext, messages uint32
	modSeq                uint64
	sel                   string
	target                string
	deleted               bool
}

type journal struct {
	mu         sync.Mutex
	f          *os.File
	w          *bufio.Writer
	n          int
	msgs       map[srcKey]*entry
	gm         map[string]srcKey // X-GM-MSGID -> where it is recorded
	states     map[string]folderState
	unfinished map[string]bool
	loaded     map[string]bool // Recorder sinks: source folders loaded
	err        error
}

func openJournal(path string) (*journal, error) {
	j := &journal{msgs: map[srcKey]*entry{}, gm: map[string]srcKey{}, states: map[string]folderState{}, unfinished: map[string]bool{}, loaded: map[string]bool{}}
	if path == "" {
		return j, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l jline
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue // a torn last line
			}
			j.apply(l)
		}
		f.Close()
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	j.f, j.w = f, bufio.NewWriterSize(f, 64<<10)
	return j, nil
}

func (j *journal) apply(l jline) {
	k := l.keyOf()
	switch l.T {
	case "m":
		j.msgs[k] = &entry{tf: l.TF, tuv: l.TUV, tuid: l.TUID, key: l.Key, pm: l.PM, gm: l.GM, id: l.ID, flags: l.Flags, sum: l.Sum}
		if l.GM != "" {
			j.gm[l.GM] = k
		}
	case "f":
		if e := j.msgs[k]; e != nil {
			e.flags, e.sum = l.Flags, l.Sum
			if l.TUID != 0 {
				e.tuv, e.tuid = l.TUV, l.TUID
			}
		}
	case "g":
		if e := j.msgs[k]; e != nil && e.gm != "" && j.gm[e.gm] == k {
			delete(j.gm, e.gm)
		}
		delete(j.msgs, k)
	case "s":
		j.unfinished[l.TF] = true
	case "e":
		delete(j.unfinished, l.TF)
	case "st":
		j.states[l.SF] = folderState{uv: l.UV, uidNext: l.UIDNext, messages: l.Messages, modSeq: l.ModSeq, sel: l.Sel, target: l.TF, deleted: l.Del}
	}
}

// write records a line (applied in memory at once); durable at the next
// sync, which happens every 200 lines and at every bracket.
func (j *journal) write(l jline) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if l.Flags == nil && (l.T == "m" || l.T == "f") {
		l.Flags = []string{}
	}
	j.apply(l)
	if j.w == nil {
		return
	}
	b, _ := json.Marshal(l)
	j.w.Write(append(b, '\n'))
	j.n++
	if j.n%200 == 0 {
		j.syncLocked()
	}
}

func (j *journal) get(k srcKey) *entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.msgs[k]
}

// folder returns the journal's entries of one source folder and UIDVALIDITY.
func (j *journal) folder(name string, uv uint32) map[uint32]*entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[uint32]*entry{}
	for k, e := range j.msgs {
		if k.folder == name && k.uv == uv && k.id == "" {
			c := *e
			out[k.uid] = &c
		}
	}
	return out
}

// folderIDs returns the journal's entries of one source folder and
// UIDVALIDITY recorded by ID (an IDReader's messages).
func (j *journal) folderIDs(name string, uv uint32) map[string]*entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[string]*entry{}
	for k, e := range j.msgs {
		if k.folder == name && k.uv == uv && k.id != "" {
			c := *e
			out[k.id] = &c
		}
	}
	return out
}

// count returns how many messages of a source folder and UIDVALIDITY the
// journal records.
func (j *journal) count(name string, uv uint32) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for k := range j.msgs {
		if k.folder == name && k.uv == uv {
			n++
		}
	}
	return n
}

// byGmail returns where a Gmail message (X-GM-MSGID) is recorded.
func (j *journal) byGmail(id string) (srcKey, *entry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	k, ok := j.gm[id]
	if !ok || j.msgs[k] == nil {
		return srcKey{}, nil
	}
	c := *j.msgs[k]
	return k, &c
}

// placed returns the source folder a Gmail message was recorded in.
func (j *journal) placed(id string) string {
	k, e := j.byGmail(id)
	if e == nil {
		return ""
	}
	return k.folder
}

func (j *journal) state(name string) (folderState, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s, ok := j.states[name]
	return s, ok
}

func (j *journal) isUnfinished(tf string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.unfinished[tf]
}

// bracket writes a durable "s" or "e" line for a target folder.
func (j *journal) bracket(tf string, start bool) error {
	t := "e"
	if start {
		t = "s"
	}
	j.write(jline{T: t, TF: tf})
	return j.sync()
}

func (j *journal) sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.syncLocked()
}

func (j *journal) syncLocked() error {
	if j.w == nil {
		return nil
	}
	if err := j.w.Flush(); err != nil {
		j.err = err
		return err
	}
	if err := j.f.Sync(); err != nil {
		j.err = err
		return err
	}
	return nil
}

func (j *journal) Close() error {
	if j.f == nil {
		return nil
	}
	err := j.sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}
