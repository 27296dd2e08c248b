package archive

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestEscapeSegment(t *testing.T) {
	cases := map[string]string{
		"INBOX":     "INBOX",
		"":          "%",
		".":         "%2E",
		"..":        "%2E.",
		".mailmove": "%2Emailmove",
		"a/b":       "a%2Fb",
		`a\b`:       "a%5Cb",
		"a\x00b":    "a%00b",
		"tab\there": "tab%09here",
		"100%":      "100%25",
		"Entwürfe":  "Entwürfe",
		"R&D":       "R&D",
	}
	for in, want := range cases {
		if got := EscapeSegment(in); got != want {
			t.Errorf("EscapeSegment(%q) = %q, want %q", in, got, want)
		}
		if back := UnescapeSegment(EscapeSegment(in)); back != in {
			t.Errorf("UnescapeSegment(EscapeSegment(%q)) = %q", in, back)
		}
	}
}

func FuzzRelPathStaysInside(f *testing.F) {
	f.Add("..", "x")
	f.Add("a/../..", "/etc")
	f.Fuzz(func(t *testing.T, a, b string) {
		p := RelPath([]string{a, b})
		if filepath.IsAbs(p) || p == ".." || strings.HasPrefix(p, ".."+string(filepath.Separator)) || strings.HasPrefix(p, ".") {
			t.Fatalf("RelPath(%q, %q) = %q leaves the archive", a, b, p)
		}
		if clean := filepath.Clean(p); clean != p {
			t.Fatalf("RelPath(%q, %q) = %q is not clean (%q)", a, b, p, clean)
		}
	})
}

func TestThunderbirdPath(t *testing.T) {
	for want, segs := range map[string][]string{
		"INBOX":                      {"INBOX"},
		"Archive.sbd/2024":           {"Archive", "2024"},
		"A.sbd/B.sbd/C":              {"A", "B", "C"},
		"x%2Esbd":                    {"x.sbd"},
		"x%2EMSF.sbd/y":              {"x.MSF", "y"},
		"%2E..sbd/%2Emailmove":       {"..", ".mailmove"},
		"a%2Fb.sbd/Entwürfe":         {"a/b", "Entwürfe"},
		"plain.mbox.sbd/child%2Esbd": {"plain.mbox", "child.sbd"},
	} {
		if got := filepath.ToSlash(ThunderbirdPath(segs)); got != want {
			t.Errorf("%q: %q, want %q", segs, got, want)
		}
	}
}
