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

// FolderRole returns the special use ("\\Sent", "\\Trash", "\\All", ...)
// named among a folder's LIST attributes, as an import reads it from an
// archive's folder state; "" when there is none.
func FolderRole(attrs []string) string {
	role := ""
	for _, a := range attrs {
		if r := roleAttr(a); r != "" {
			role = r
		}
	}
	return role
}

// Normalize returns the bytes of r as an import sends them: line endings
// made CRLF (a bare LF becomes CRLF; CRLF, CR CR LF and a lone CR stay),
// nothing else changed. It streams; closing it closes r.
func Normalize(r io.ReadCloser) io.ReadCloser { return newPrepared(r, nil) }

// MessageID returns the Message-ID (without angle brackets) that an import
// reads from a message header (the bytes up to the empty line, or some
// fields of it), "" when there is none.
func MessageID(header []byte) string {
	return parseHeader(append(append([]byte(nil), header...), '\r', '\n')).messageID
}
