package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// MaxName is the most bytes a file or directory name in the archive may
// have: NAME_MAX on Linux and macOS (255 bytes), and within NTFS's 255
// UTF-16 units. An escaped segment longer than that, with its suffix
// (".mbox", ".jsonl"), gets a shortened name (see ShortenName).
const MaxName = 255

// shortMark separates a shortened name's readable prefix from its hash.
// EscapeSegment never writes it ('%' is always followed by two hex digits),
// so a shortened name is never the escaped form of any other folder name.
const shortMark = "%~"

// ShortenName returns name unchanged when it has at most limit bytes, else
// its stable short form: a readable prefix of name, cut on a UTF-8 boundary
// and never inside a %XX escape, then "%~" and the first 16 hex digits of
// the SHA-256 of the whole name, limit bytes at most. The same name always
// gives the same short form, and two names give two short forms unless
// they share both the prefix and 64 bits of hash.
func ShortenName(name string, limit int) string {
	if len(name) <= limit {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	tail := shortMark + hex.EncodeToString(sum[:8])
	cut := max(limit-len(tail), 0)
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	// do not cut a %XX escape in two
	if i := strings.LastIndexByte(name[:cut], '%'); i >= 0 && i+3 > cut {
		cut = i
	}
	return name[:cut] + tail
}

// EscapeSegment makes one folder name segment safe as a file name: '%' and
// any '/', '\', NUL or control character become %XX, a leading '.' becomes
// %2E (so no segment is ".", ".." or hidden, and none can reach .mailmove),
// and an empty segment becomes "%". The mapping is one to one.
func EscapeSegment(seg string) string {
	if seg == "" {
		return "%"
	}
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c == '%' || c == '/' || c == '\\' || c < 0x20 || c == 0x7f || (i == 0 && c == '.'):
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// UnescapeSegment reverses EscapeSegment.
func UnescapeSegment(s string) string {
	if s == "%" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+3], "%02X", &c); err == nil {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// RelPath returns the path, relative to the archive root and with the OS
// separator, of a folder given as its name segments (the directory of an
// .eml folder). Every segment is escaped, so the result never leaves the
// archive, and a segment longer than MaxName bytes is shortened.
func RelPath(segments []string) string {
	return relPath(segments, "")
}

// relPath is RelPath with room kept for suffix after the last segment.
func relPath(segments []string, suffix string) string {
	parts := make([]string, len(segments))
	for i, s := range segments {
		limit := MaxName
		if i == len(segments)-1 {
			limit -= len(suffix)
		}
		parts[i] = ShortenName(EscapeSegment(s), limit)
	}
	return filepath.Join(parts...) + suffix
}

// MboxPath returns the path of a folder's mbox file, relative to the
// archive root, with the OS separator.
func MboxPath(segments []string) string {
	return relPath(segments, ".mbox")
}

// indexName is the file name of a folder's index in .mailmove/index: the
// whole folder name escaped, shortened when it would be too long.
func indexName(folder string) string {
	var b strings.Builder
	for i := 0; i < len(folder); i++ {
		c := folder[i]
		if c == '%' || c == '/' || c == '\\' || c < 0x20 || c == 0x7f || (i == 0 && c == '.') {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return ShortenName(b.String(), MaxName-len(".jsonl")) + ".jsonl"
}

// mboxPath returns the path of a folder's mbox file, relative to the
// archive root, in the archive's layout.
func (a *Archive) mboxPath(segments []string) string {
	if a.Header.Layout != LayoutThunderbird {
		return MboxPath(segments)
	}
	return ThunderbirdPath(segments)
}

// ThunderbirdPath returns the path, relative to the archive root and with
// the OS separator, of a folder's mbox file in Thunderbird's layout:
// A/B/C is A.sbd/B.sbd/C. Segments are escaped as by EscapeSegment, and a
// segment that ends in ".sbd" or ".msf" (Thunderbird's summary files) gets
// that dot escaped too, so that no folder can take the place of another
// one's subfolder directory or summary.
func ThunderbirdPath(segments []string) string {
	parts := make([]string, len(segments))
	for i, s := range segments {
		e := EscapeSegment(s)
		if l := strings.ToLower(e); strings.HasSuffix(l, ".sbd") || strings.HasSuffix(l, ".msf") {
			e = e[:len(e)-4] + "%2E" + e[len(e)-3:]
		}
		// room for the ".sbd" or ".msf" Thunderbird puts after a name
		e = ShortenName(e, MaxName-4)
		if i < len(segments)-1 {
			e += ".sbd"
		}
		parts[i] = e
	}
	return filepath.Join(parts...)
}
