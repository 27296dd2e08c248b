package export

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
)

// gmailState is what the last complete Gmail export saw of All Mail, Spam
// and Trash (.mailmove/gmail.json). When their UIDVALIDITY, UIDNEXT and
// message count have not moved since, no message arrived and none moved to
// Spam or Trash: the next run skips the metadata pass (unless it refreshes
// flags, or mirrors after a run that did not). It is written only by a run
// that finished without a failure, and removed by any other.
type gmailState struct {
	// Filter is --folder/--exclude of that run: other ones need a pass.
	Filter string `json:"filter"`
	// Mailboxes are the STATUS of All Mail, Spam and Trash by name.
	Mailboxes map[string]gmailBoxState `json:"mailboxes"`
	// Folders is the number of archive folders that run counted.
	Folders int `json:"folders"`
	// Mirror: that run moved the messages gone from the server to the
	// deleted area (Options.Mirror). A run without it did not look for
	// them: a --mirror run after it needs a pass, changed or not.
	Mirror bool `json:"mirror,omitempty"`
}

type gmailBoxState struct {
	UIDValidity uint32 `json:"uidvalidity"`
	UIDNext     uint32 `json:"uidnext"`
	Messages    uint32 `json:"messages"`
}

func gmailStatePath(a *archive.Archive) string {
	return filepath.Join(a.Root, archive.StateDir, "gmail.json")
}

func gmailFilter(o *Options) string {
	return strings.Join(o.Include, "\x00") + "\x01" + strings.Join(o.Exclude, "\x00")
}

// gmailNow is the state of the source mailboxes as LIST/STATUS gave them,
// or nil when one lacks a STATUS.
func gmailNow(r *gmailRoles) map[string]gmailBoxState {
	out := map[string]gmailBoxState{}
	for _, f := range []*account.Folder{r.all, r.junk, r.trash} {
		if f == nil {
			continue
		}
		s := f.Status
		if s == nil || s.NumMessages == nil || s.UIDNext == 0 {
			return nil
		}
		out[f.Name] = gmailBoxState{UIDValidity: s.UIDValidity, UIDNext: uint32(s.UIDNext), Messages: *s.NumMessages}
	}
	return out
}

// gmailUnchanged reports whether nothing moved since the last complete run,
// and the folder count it had.
func gmailUnchanged(o *Options, r *gmailRoles) (bool, int) {
	if o.RefreshFlags {
		return false, 0
	}
	now := gmailNow(r)
	b, err := os.ReadFile(gmailStatePath(o.Archive))
	if err != nil || now == nil {
		return false, 0
	}
	var st gmailState
	if json.Unmarshal(b, &st) != nil || st.Filter != gmailFilter(o) || len(st.Mailboxes) != len(now) || (o.Mirror && !st.Mirror) {
		return false, 0
	}
	for name, s := range now {
		if st.Mailboxes[name] != s {
			return false, 0
		}
	}
	return true, st.Folders
}

// saveGmailState records the run's view when it finished cleanly (folders
// is the number of archive folders it counted), and removes an older
// record otherwise.
func saveGmailState(o *Options, r *gmailRoles, clean bool, folders int) error {
	p := gmailStatePath(o.Archive)
	now := gmailNow(r)
	if !clean || now == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(gmailState{Filter: gmailFilter(o), Mailboxes: now, Folders: folders, Mirror: o.Mirror})
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
