//go:build unix

package archive

import (
	"os"
	"syscall"
)

// createExcl creates a new file, 0600, for writing. It costs one open(2):
// os.OpenFile would also try to register the file with the runtime's
// poller, which a regular file refuses, a few more system calls per
// message of an .eml export.
func createExcl(name string) (*os.File, error) {
	fd, err := syscall.Open(name, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// rename renames a file over a name that is not a directory, with one
// rename(2) (os.Rename looks at the target first).
func rename(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// dupFile returns a second descriptor of the open file f, which stays open
// when f is closed.
func dupFile(f *os.File) (*os.File, bool) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, false
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()), true
}
