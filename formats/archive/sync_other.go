//go:build !linux

package archive

import "os"

// syncFiles makes the given files and their directory durable, one fsync each.
func syncFiles(root, dir string, files []string) error {
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return syncDir(dir)
}
