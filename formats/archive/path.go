package archive

import (
	"fmt"
	"path/filepath"
	"strings"
)

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
// separator, of a folder given as its name segments. Every segment is
// escaped, so the result never leaves the archive.
func RelPath(segments []string) string {
	parts := make([]string, len(segments))
	for i, s := range segments {
		parts[i] = EscapeSegment(s)
	}
	return filepath.Join(parts...)
}

// indexName is the file name of a folder's index in .mailmove/index.
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
	return b.String() + ".jsonl"
}

// mboxPath returns the path of a folder's mbox file, relative to the
// archive root, in the archive's layout.
func (a *Archive) mboxPath(segments []string) string {
	if a.Header.Layout != LayoutThunderbird {
		return RelPath(segments) + ".mbox"
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
		if i < len(segments)-1 {
			e += ".sbd"
		}
		parts[i] = e
	}
	return filepath.Join(parts...)
}
