package imports

import (
	"io"

	"github.com/mailmove/mailmove/account"
)

// This file opens a few of the import's rules to the other verbs (verify),
// so that they apply exactly the rules an import applies: the folder
// mapping, the line endings of what is sent, the Message-ID it keys on.

// TargetFolder returns the target folder ("/" between levels) into which an
// import with these options (Folder, Map, Prefix) puts a message of source
// folder src, whose special use is role ("\\Sent", ...; "" if unknown), on
// a target holding folders (special use found by LIST attributes, else by
// name); bridge applies Proton Mail Bridge's rules as a target. When such a
// message is not imported at all (Bridge refuses it), name is "" and skip
// says why.
func (o *Options) TargetFolder(src, role string, folders []*account.Folder, bridge bool) (name, skip string) {
	it := &Item{Role: role}
	it.Meta.Folder = src
	return o.targetFor(it, folders, bridge)
}

// Normalize returns the bytes of r as an import sends them: line endings
// made CRLF (a bare LF becomes CRLF; CRLF, CR CR LF and a lone CR stay),
// nothing else changed. It streams; closing it closes r.
func Normalize(r io.ReadCloser) io.ReadCloser { return newPrepared(r, nil) }
