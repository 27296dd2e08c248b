package archive

import (
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
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
		for _, part := range strings.Split(filepath.ToSlash(MboxPath([]string{a, b})), "/") {
			if len(part) > MaxName {
				t.Fatalf("MboxPath(%q, %q): a name of %d bytes", a, b, len(part))
			}
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

func TestShortenName(t *testing.T) {
	long := strings.Repeat("ä", 150) // 300 bytes
	cases := []string{long, long + "x", strings.Repeat("%25", 100), strings.Repeat("a", 254) + "%2F", strings.Repeat("日本", 60)}
	seen := map[string]string{}
	for _, name := range cases {
		for _, limit := range []int{MaxName, MaxName - len(".mbox"), MaxName - len(".jsonl")} {
			s := ShortenName(name, limit)
			if len(s) > limit || !utf8.ValidString(s) || !strings.Contains(s, "%~") {
				t.Errorf("ShortenName(%q…, %d) = %q (%d bytes)", name[:10], limit, s, len(s))
			}
			if s != ShortenName(name, limit) {
				t.Errorf("not stable")
			}
			// never a cut %XX escape: every '%' but the mark's is followed by two hex digits
			body := s[:strings.Index(s, "%~")]
			for i := 0; i < len(body); i++ {
				if body[i] == '%' && (i+2 >= len(body) || !isHex(body[i+1]) || !isHex(body[i+2])) {
					t.Errorf("%q: an escape cut in two", s)
				}
			}
			if other, ok := seen[s]; ok && other != name {
				t.Errorf("%q and %q both shorten to %q", other, name, s)
			}
			seen[s] = name
		}
	}
	if got := ShortenName("INBOX", MaxName); got != "INBOX" {
		t.Errorf("a short name was changed: %q", got)
	}
	// a long folder's paths: every file name within the limit
	segs := []string{long, strings.Repeat("x", 300), long}
	for _, p := range []string{RelPath(segs), MboxPath(segs), indexName(strings.Join(segs, "/"))} {
		for _, part := range strings.Split(filepath.ToSlash(p), "/") {
			if len(part) > MaxName {
				t.Errorf("%d-byte name in %q", len(part), p)
			}
		}
	}
	if MboxPath([]string{long}) == MboxPath([]string{long + "x"}) {
		t.Error("two long names map to one mbox file")
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' || c >= 'a' && c <= 'f' }
