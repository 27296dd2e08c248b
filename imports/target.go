package imports

import (
	"github.com/emersion/go-imap/v2"
)

// AllowedFlags keeps the flags a folder with these PERMANENTFLAGS can store
// (see the import's rules: never \Recent, the system flags always, keywords
// where \* or the keyword is listed, all when PERMANENTFLAGS was not sent).
func AllowedFlags(flags []string, perm []string) []string {
	var p []imap.Flag
	if perm != nil {
		p = make([]imap.Flag, len(perm))
		for i, f := range perm {
			p[i] = imap.Flag(f)
		}
	}
	out := []string{}
	for _, f := range allowedFlags(flags, p) {
		out = append(out, string(f))
	}
	return out
}

// ValidKeyword reports whether s can be sent as an IMAP keyword (an atom).
func ValidKeyword(s string) bool { return s != "" && s[0] != '\\' && validFlag(s) }
