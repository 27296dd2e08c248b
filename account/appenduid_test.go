package account

import (
	"fmt"
	"testing"
)

// The UIDs of a MULTIAPPEND come from the tagged OK's APPENDUID (RFC 4315),
// ranges and lists alike; anything else gives none.
func TestParseAppendUID(t *testing.T) {
	for in, want := range map[string]string{
		"OK [APPENDUID 1700000000 5:7,9] Append completed.": "1700000000 [5 6 7 9]",
		"OK [APPENDUID 12 42] done":                         "12 [42]",
		"OK Append completed.":                              "0 []",
		"OK [APPENDUID 12 x] done":                          "0 []",
		"OK [APPENDUID 12 7:5] done":                        "12 [5 6 7]",
	} {
		uv, uids := parseAppendUID(in)
		if got := fmt.Sprint(uv, " ", uids); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}
