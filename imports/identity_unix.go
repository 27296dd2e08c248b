//go:build unix

package imports

import (
	"fmt"
	"os"
	"syscall"
)

// fileIdentity is the device and inode of a file: what it is, whatever
// the path it is reached by.
func fileIdentity(fi os.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("dev %d inode %d", uint64(st.Dev), uint64(st.Ino))
	}
	return ""
}
