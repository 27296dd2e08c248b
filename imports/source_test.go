package imports

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/engine"
)

// readAll lists a FilesSource: folder -> Message-ID -> message (with ID).
func readAll(t *testing.T, s *FilesSource) map[string]map[string]*engine.Message {
	t.Helper()
	ctx := context.Background()
	folders, err := s.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]*engine.Message{}
	for _, f := range folders {
		r, err := s.Open(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		uids, err := r.UIDs(ctx, engine.Select{})
		if err != nil {
			t.Fatal(err)
		}
		ids, err := r.(engine.IDReader).IDs(ctx, uids)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := r.Meta(ctx, uids)
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = map[string]*engine.Message{}
		for _, u := range uids {
			m := meta[u]
			if m == nil || m.ID != ids[u] || m.ID == "" {
				t.Fatalf("%s UID %d: meta %+v, ID %q", f.Name, u, m, ids[u])
			}
			m.Labels = s.Labels(engine.LabelKeyOf(m.PMID, m.GmailID, m.ID))
			local, _, _ := strings.Cut(m.MessageID, "@")
			out[f.Name][local] = m
		}
	}
	return out
}

// A Maildir's messages keep their IDs when it gains files (the positions
// move) and when a mail program renames a file to change its flags; the
// flags are read anew, the sizes are those on the wire (CRLF).
func TestFilesSourceMaildirIDs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o700)
	}
	msg := func(id string) string {
		return "From: a@example.org\nSubject: " + id + "\nMessage-ID: <" + id + "@example.org>\n\nbody\n"
	}
	write := func(name, id string) {
		if err := os.WriteFile(filepath.Join(root, name), []byte(msg(id)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cur/1700000002.M2P1.host:2,S", "b")
	write("cur/1700000003.M3P1.host:2,", "c")
	before := readAll(t, &FilesSource{Path: root})
	inbox := before["INBOX"]
	if len(inbox) != 2 || inbox["b"].Size != int64(len(msg("b"))+5) || !strings.Contains(strings.Join(inbox["b"].Flags, " "), `\Seen`) {
		t.Fatalf("first scan: %+v", inbox)
	}
	// a new message that sorts first, and b flagged by the mail program
	write("new/1700000001.M1P1.host", "a")
	if err := os.Rename(filepath.Join(root, "cur/1700000002.M2P1.host:2,S"), filepath.Join(root, "cur/1700000002.M2P1.host:2,FS")); err != nil {
		t.Fatal(err)
	}
	after := readAll(t, &FilesSource{Path: root})["INBOX"]
	if len(after) != 3 {
		t.Fatalf("second scan: %+v", after)
	}
	for _, id := range []string{"b", "c"} {
		if after[id].ID != inbox[id].ID {
			t.Errorf("%s: ID %q, was %q", id, after[id].ID, inbox[id].ID)
		}
	}
	if after["a"].ID == inbox["b"].ID || after["a"].ID == inbox["c"].ID {
		t.Errorf("the new message has an old ID: %q", after["a"].ID)
	}
	if f := strings.Join(after["b"].Flags, " "); !strings.Contains(f, `\Flagged`) || !strings.Contains(f, `\Seen`) {
		t.Errorf("b's flags after the rename: %q", f)
	}
}

// Takeout's labels are the messages' labels, as the engine takes them:
// user labels, Starred and $Important; Gmail's system labels are folders
// and flags already. With LabelsAsFolders a copy's own folder is not one
// of its labels.
func TestFilesSourceTakeoutLabels(t *testing.T) {
	for _, asFolders := range []bool{false, true} {
		got := readAll(t, &FilesSource{Path: fixture("takeout.mbox"), LabelsAsFolders: asFolders})
		var labels []string
		for f, ms := range got {
			for id, m := range ms {
				l := append([]string{}, m.Labels...)
				sort.Strings(l)
				labels = append(labels, f+" "+id+": "+strings.Join(l, ","))
			}
		}
		sort.Strings(labels)
		all := strings.Join(labels, "; ")
		t.Logf("asFolders=%v: %s", asFolders, all)
		for _, want := range []string{"INBOX", "Starred", "$Important", "Travel", "Projects, 2024"} {
			if !strings.Contains(all, want) {
				t.Errorf("asFolders=%v: %q not among %s", asFolders, want, all)
			}
		}
		for _, never := range []string{"Opened", "Unread", "Category", "Inbox", "Chat", "Archived"} {
			if strings.Contains(all, ": "+never) || strings.Contains(all, ","+never) {
				t.Errorf("asFolders=%v: %q is a label: %s", asFolders, never, all)
			}
		}
		if asFolders {
			for _, l := range labels {
				f, rest, _ := strings.Cut(l, " ")
				if _, ls, _ := strings.Cut(rest, ": "); f != "INBOX" && strings.Contains(","+ls+",", ","+f+",") {
					t.Errorf("a copy in %s has its own folder as label: %s", f, l)
				}
			}
		}
	}
}

// A file that changes between the measure and the copy ends its stream
// with an error before its last byte: the target never stores it cut.
func TestFilesSourceChangedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "one.eml")
	os.WriteFile(p, []byte("From: a@example.org\r\nSubject: one\r\nMessage-ID: <one@example.org>\r\n\r\nshort\r\n"), 0o600)
	ctx := context.Background()
	s := &FilesSource{Path: dir}
	folders, err := s.Folders(ctx)
	if err != nil || len(folders) != 1 {
		t.Fatalf("%v %v", folders, err)
	}
	r, _ := s.Open(ctx, folders[0])
	meta, err := r.Meta(ctx, []uint32{1})
	if err != nil || meta[1] == nil {
		t.Fatalf("%v %v", meta, err)
	}
	os.WriteFile(p, []byte("From: a@example.org\r\nSubject: one\r\nMessage-ID: <one@example.org>\r\n\r\nmuch longer now\r\n"), 0o600)
	var got int64
	done, err := r.Fetch(ctx, []uint32{1}, func(uid uint32, body io.Reader, size int64) error {
		n, err := io.Copy(io.Discard, body)
		got = n
		return err
	})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(ie.Msg, "changed") || done[1] || got >= meta[1].Size {
		t.Fatalf("Fetch of a changed file: %v, delivered %v, %d of %d bytes", err, done, got, meta[1].Size)
	}
}
