package imports

import "testing"

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
