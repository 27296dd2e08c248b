package export

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/mailmove/mailmove/account"
)

// AllMailOnlyUIDs returns, on a Proton Mail Bridge account, the UIDs of the
// messages of All Mail that are in no folder (by X-Pm-Internal-Id, as an
// export decides it): those an export with these options stores into the
// archive folder "All Mail". A message without X-Pm-Internal-Id is kept, as
// export keeps it; a message whose folders are all excluded is not. It
// returns nil when All Mail is not exported, and leaves All Mail's
// UIDVALIDITY in uidValidity. It only EXAMINEs and FETCHes header fields:
// nothing on the server changes.
func AllMailOnlyUIDs(ctx context.Context, c *account.Conn, folders []*account.Folder, labels LabelMode, include, exclude []string) (uids []uint32, uidValidity uint32, err error) {
	e := &exporter{o: Options{Include: include, Exclude: exclude, Labels: labels}, bridge: true}
	_, _, allMail, real := e.plan(folders)
	if allMail == nil {
		return nil, 0, nil
	}
	e.real = real
	inFolders, err := e.folderIDs(ctx, c)
	if err != nil {
		return nil, 0, err
	}
	sel, err := c.Examine(allMail.f.Name)
	if err != nil || sel.NumMessages == 0 {
		return nil, 0, err
	}
	all, err := c.UIDsAbove(0)
	if err != nil {
		return nil, 0, err
	}
	ids, err := idsOf(c, allMail.f.Name, all)
	if err != nil {
		return nil, 0, err
	}
	for _, u := range all {
		id, there := ids[u]
		if !there {
			continue // expunged since
		}
		if _, inFolder := inFolders[id]; id == "" || !inFolder {
			uids = append(uids, u)
		}
	}
	return uids, sel.UIDValidity, nil
}

// LabelsByID returns, on a Proton Mail Bridge account, the labels of every
// message that has any, by X-Pm-Internal-Id, as an export records them in
// the archive (Labels/Work is "Work", Starred is "Starred"), sorted. It
// EXAMINEs each label mailbox and fetches one header field: nothing on the
// server changes.
func LabelsByID(ctx context.Context, c *account.Conn, folders []*account.Folder) (map[string][]string, error) {
	e := &exporter{o: Options{Labels: LabelsAsMetadata}, bridge: true}
	_, boxes, _, _ := e.plan(folders)
	out := map[string][]string{}
	for _, b := range boxes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sel, err := c.Examine(b.Name)
		if err != nil {
			return nil, err
		}
		if sel.NumMessages == 0 {
			continue
		}
		ids, err := c.FetchHeaderField("X-Pm-Internal-Id")
		if err != nil {
			return nil, fmt.Errorf("reading the labels of %q: %w", b.Name, err)
		}
		label := b.Path()
		if len(b.Segments) > 1 && b.Segments[0] == "Labels" {
			label = strings.Join(b.Segments[1:], "/")
		}
		for _, id := range ids {
			if id != "" {
				out[id] = append(out[id], label)
			}
		}
	}
	for _, l := range out {
		sort.Strings(l)
	}
	return out, nil
}
