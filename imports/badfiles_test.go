//go:build unix

package imports

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailmove/mailmove/internal/testmail"
)

// A tree with every kind of bad file: each is one reported item, nothing
// that is not a regular file is opened, the scan never hangs, and the mail
// beside them is imported.
func TestBadFilesInTree(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := "From: a@example.org\nSubject: %s\nMessage-ID: <%s@example.org>\nDate: Mon, 06 Jan 2025 09:15:00 +0100\n\nfine\n"
	write("good.eml", fmt.Sprintf(good, "good eml", "g1"))
	write("Box.mbox", "From a Mon Jan  6 08:15:00 2025\n"+fmt.Sprintf(good, "good mbox", "g2")+"\n")
	write("Maildir/cur/1.host:2,S", fmt.Sprintf(good, "good maildir", "g3"))
	write("Maildir/tmp/2.host", fmt.Sprintf(good, "unfinished", "g4"))
	os.MkdirAll(filepath.Join(dir, "Maildir", "new"), 0o700)
	write("zip.eml", "PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip")
	write("image.mbox", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	write("old.mbox.gz", "\x1f\x8b\x08\x00")
	write("notes.txt", "just some text\n")
	fifos := []string{"pipe.eml", "Maildir/cur/3.host:2,S", "pipe.mbox"}
	for _, f := range fifos {
		if err := syscall.Mkfifo(filepath.Join(dir, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("loop-b.eml", filepath.Join(dir, "loop-a.eml"))
	os.Symlink("loop-a.eml", filepath.Join(dir, "loop-b.eml"))
	os.Symlink("nowhere.eml", filepath.Join(dir, "dangling.eml"))
	os.Symlink("/", filepath.Join(dir, "root-link"))
	os.Symlink("good.eml", filepath.Join(dir, "link-to-good.eml"))
	outside := filepath.Join(t.TempDir(), "private.eml")
	os.WriteFile(outside, []byte(fmt.Sprintf(good, "private", "p1")), 0o600)
	os.Symlink(outside, filepath.Join(dir, "link-out.eml"))
	unreadable := os.Geteuid() != 0 // root reads everything: this case is checked only as a user
	if unreadable {
		write("secret.eml", fmt.Sprintf(good, "secret", "g5"))
		os.Chmod(filepath.Join(dir, "secret.eml"), 0)
		os.MkdirAll(filepath.Join(dir, "Locked"), 0o700)
		write("Locked/inside.eml", fmt.Sprintf(good, "inside", "g6"))
		os.Chmod(filepath.Join(dir, "Locked"), 0)
		defer os.Chmod(filepath.Join(dir, "Locked"), 0o700)
	}

	done := make(chan *scanned)
	go func() { done <- scanAll(t, dir) }()
	var s *scanned
	select {
	case s = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the scan hangs (a named pipe opened for reading?)")
	}
	reported := map[string]*InputError{}
	for _, b := range s.bad {
		rel, _ := filepath.Rel(dir, b.File)
		if reported[rel] != nil {
			t.Errorf("%s reported twice", rel)
		}
		reported[rel] = b
	}
	want := map[string]struct {
		kind error
		text string
	}{
		"zip.eml":                {ErrNotMail, "zip archive"},
		"image.mbox":             {ErrNotMail, "PNG image"},
		"old.mbox.gz":            {ErrCompressed, "gunzip"},
		"notes.txt":              {ErrNotMail, "not mail"},
		"pipe.eml":               {ErrNotRegular, "named pipe"},
		"pipe.mbox":              {ErrNotRegular, "named pipe"},
		"Maildir/cur/3.host:2,S": {ErrNotRegular, "named pipe"},
		"Maildir/tmp/2.host":     {ErrUnfinished, "tmp/"},
		"loop-a.eml":             {ErrBrokenLink, "loop"},
		"loop-b.eml":             {ErrBrokenLink, "loop"},
		"dangling.eml":           {ErrBrokenLink, "does not exist"},
		"root-link":              {ErrLinkToFolder, "not followed"},
		"link-out.eml":           {ErrLinkOutside, "not followed"},
	}
	if unreadable {
		want["secret.eml"] = struct {
			kind error
			text string
		}{fs.ErrPermission, "permission denied"}
		want["Locked"] = want["secret.eml"]
	} else {
		t.Log("running as root: unreadable files cannot be made here (root reads them); TestPermissionDeniedMessage checks the report")
	}
	for f, w := range want {
		r := reported[f]
		switch {
		case r == nil:
			t.Errorf("%s: not reported", f)
		case !errors.Is(r, w.kind) || !strings.Contains(r.Error(), w.text) || !strings.Contains(r.Error(), f):
			t.Errorf("%s: reported as %q (kind %v), want %v and %q", f, r.Error(), r.Err, w.kind, w.text)
		}
	}
	for f, r := range reported {
		if _, ok := want[f]; !ok {
			t.Errorf("%s: reported unexpectedly: %v", f, r)
		}
	}
	s.check(t, map[string][]string{
		"INBOX":   {"good eml []", "good eml []"}, // and through the link to it
		"Box":     {"good mbox []"},
		"Maildir": {"good maildir [\\seen]"},
	})

	// the same through an import: reported, the rest appended
	srv := testmail.Mem(t)
	sum := runImport(t, Options{Account: testmail.MemConfig(t, srv.Addr), Source: dir})
	if sum.Appended != 4 || len(sum.Failed) != len(want) {
		t.Errorf("import: appended %d (want 4: two copies of good.eml in the source, one through the link, give two), %d failures (want %d): %v", sum.Appended, len(sum.Failed), len(want), sum.Failed)
	}
}

// As root the test above cannot make a file unreadable: the report for
// one is checked here.
func TestPermissionDeniedMessage(t *testing.T) {
	e := fileError("/x/a.mbox", "a", &fs.PathError{Op: "open", Path: "/x/a.mbox", Err: syscall.EACCES})
	if !errors.Is(e, fs.ErrPermission) || !strings.Contains(e.Error(), "permission denied") || strings.Contains(e.Error(), "not an mbox") {
		t.Fatalf("%v", e)
	}
}
