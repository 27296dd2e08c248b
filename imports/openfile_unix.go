//go:build unix

package imports

import (
	"os"
	"syscall"
)

// openFlags open without blocking: opening a named pipe for reading would
// otherwise wait for a writer forever. openRegular checks the type with
// fstat right after.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY
