package export

import "github.com/mailmove/mailmove/account"

// IDsOf fetches the X-Pm-Internal-Id of uids in the open mailbox of a
// Proton Mail Bridge account. Every UID is accounted for: a UID the server
// did not answer for must be gone (a UID SEARCH says so), else the result
// is an *UnaccountedError.
func IDsOf(c *account.Conn, mailbox string, uids []uint32) (map[uint32]string, error) {
	return idsOf(c, mailbox, uids)
}

// IsConnErr reports whether the connection c is unusable after err (it
// closed, or the error is a read or connection failure rather than the
// server's answer).
func IsConnErr(c *account.Conn, err error) bool { return isConnErr(c, err) }
