// Package mailmove holds what the mailmove command ships besides code: the
// demo mailbox (testdata/demo), served by `mailmove export --from demo`.
//
// The code is in the packages below: account (read and write IMAP
// accounts), message (what moves), formats (archives on disk), export (the
// copy engine) and cmd/mailmove (the command).
package mailmove

import (
	"embed"
	"io/fs"
)

//go:embed testdata/demo
var demoFS embed.FS

// DemoCorpus returns the demo mailbox: manifest.json, which lists each
// message's folder, file, flags and date, and the .eml files.
func DemoCorpus() fs.FS {
	sub, err := fs.Sub(demoFS, "testdata/demo")
	if err != nil {
		panic(err)
	}
	return sub
}
