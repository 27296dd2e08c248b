package export

import (
	"context"

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
	e := &engine{o: Options{Include: include, Exclude: exclude, Labels: labels}, bridge: true}
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
