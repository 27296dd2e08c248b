//go:build !unix

package imports

import "os"

// fileIdentity is empty where there is no device and inode: the resolved
// path alone identifies a source.
func fileIdentity(fi os.FileInfo) string { return "" }
