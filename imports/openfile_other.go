//go:build !unix

package imports

import "os"

// openFlags: elsewhere a plain read-only open (there are no named pipes in
// a folder tree to hang on).
const openFlags = os.O_RDONLY
