//go:build !unix

package archive

import "os"

// createExcl creates a new file, 0600, for writing.
func createExcl(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}

// rename renames a file.
func rename(from, to string) error { return os.Rename(from, to) }

// dupFile is not done here: segments are decrypted anew for each message.
func dupFile(f *os.File) (*os.File, bool) { return nil, false }
