package imports

import (
	"encoding/base64"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

var mutf7Enc = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// decodeMUTF7 decodes an IMAP folder name in modified UTF-7 (RFC 3501
// 5.1.3), as mbsync, offlineimap, Dovecot and Courier keep them on disk:
// "Entw&APw-rfe" is "Entwürfe", "R&-D" is "R&D". A name that is not valid
// modified UTF-7 (a UTF-8 name, "R&D") comes back unchanged.
func decodeMUTF7(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return s // not 7-bit: already UTF-8 (or something else)
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			continue
		}
		j := strings.IndexByte(s[i+1:], '-')
		if j < 0 {
			return s
		}
		enc := s[i+1 : i+1+j]
		i += j + 2
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7Enc.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 || len(raw) == 0 {
			return s
		}
		u := make([]uint16, len(raw)/2)
		for k := range u {
			u[k] = uint16(raw[2*k])<<8 | uint16(raw[2*k+1])
		}
		runes := utf16.Decode(u)
		for _, r := range runes {
			if r == utf8.RuneError || (r >= 0x20 && r <= 0x7e) {
				return s // printable ASCII must not be encoded: not modified UTF-7
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}
