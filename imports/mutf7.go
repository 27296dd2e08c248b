package imports

import "github.com/mailmove/mailmove/account"

// decodeMUTF7 decodes an IMAP folder name in modified UTF-7 (RFC 3501
// 5.1.3), as mbsync, offlineimap, Dovecot and Courier keep them on disk:
// "Entw&APw-rfe" is "Entwürfe", "R&-D" is "R&D". A name that is not valid
// modified UTF-7 (a UTF-8 name, "R&D") comes back unchanged. It is the
// decoder Gmail's label names go through (account.DecodeUTF7).
func decodeMUTF7(s string) string { return account.DecodeUTF7(s) }
