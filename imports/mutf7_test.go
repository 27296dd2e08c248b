package imports

import (
	"strings"
	"testing"
)

func TestDecodeMUTF7(t *testing.T) {
	for in, want := range map[string]string{
		"Entw&APw-rfe":            "Entwürfe",
		"R&-D":                    "R&D",
		"R&D":                     "R&D", // not modified UTF-7: as it is
		"&ZeVnLIqe-":              "日本語",
		"Budget%2024":             "Budget%2024",
		"Entwürfe":                "Entwürfe",
		"&AEE-":                   "&AEE-", // ASCII must not be encoded
		"&APw-&APw-":              "üü",
		"Archiv&AOQ-ologie/&APw-": "Archiväologie/ü",
	} {
		if got := decodeMUTF7(in); got != want {
			t.Errorf("decodeMUTF7(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDotLevelNames(t *testing.T) {
	for _, c := range []struct {
		in        string
		dropInbox bool
		want      string
	}{
		{"Archive.2024", true, "Archive|2024"},
		{"INBOX.Sent", true, "Sent"},        // offlineimap from Courier: the namespace prefix
		{"INBOX.Sent", false, "INBOX|Sent"}, // Maildir++ .INBOX.Sent: a child of INBOX
		{"INBOX", true, "INBOX"},
		{"a..b", true, "a..b"}, // an empty level: kept whole
		{"x.", true, "x."},
	} {
		if got := strings.Join(dotLevelNames(c.in, c.dropInbox), "|"); got != c.want {
			t.Errorf("dotLevelNames(%q, %v) = %q, want %q", c.in, c.dropInbox, got, c.want)
		}
	}
}
