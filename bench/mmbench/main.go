// Command mmbench is the benchmark's helper (bench/mbsync.sh):
//
//	mmbench fetch   -url URL -ca PEM -pwfile F [-manifest OUT]
//	mmbench verify  -manifest M (-archive DIR | -url URL -ca PEM -pwfile F) [-count-only]
//
// fetch is the bare baseline: one connection, every folder, one
// `UID FETCH 1:* BODY.PEEK[]` each, the bodies read and dropped. With
// -manifest it also writes the SHA-256 of every message, by folder (the
// truth the other runs are checked against; that run is not timed).
//
// verify checks that an archive (read back through formats/archive, the
// stored bytes hashed again, not the index's hashes) or an account holds
// exactly the messages of the manifest, byte for byte, in the same folders,
// counting copies. -count-only compares the number of messages per folder
// (for tools that change the bytes, as mbsync does with X-TUID). It exits 1
// and says what differs when anything does.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
)

// manifest is folder -> sorted SHA-256 of its messages (copies repeated).
type manifest map[string][]string

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: mmbench fetch|verify [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	url := fs.String("url", "", "account URL")
	ca := fs.String("ca", "", "CA file")
	pwfile := fs.String("pwfile", "", "password file")
	man := fs.String("manifest", "", "manifest file")
	arch := fs.String("archive", "", "mailmove archive to verify")
	countOnly := fs.Bool("count-only", false, "compare message counts per folder only")
	identity := fs.String("identity", "", "age identity file of an encrypted archive")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "fetch":
		var m manifest
		m, err = fetchAccount(*url, *ca, *pwfile, *man != "")
		if err == nil && *man != "" {
			err = writeManifest(*man, m)
		}
	case "verify":
		var want, got manifest
		if want, err = readManifest(*man); err != nil {
			break
		}
		if *arch != "" {
			got, err = readArchive(*arch, *identity)
		} else {
			got, err = fetchAccount(*url, *ca, *pwfile, !*countOnly)
		}
		if err == nil {
			err = compare(want, got, *countOnly)
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mmbench:", err)
		os.Exit(1)
	}
}

// fetchAccount reads every message of every folder with one UID FETCH per
// folder, hashing the bodies when hash is set.
func fetchAccount(url, ca, pwfile string, hash bool) (manifest, error) {
	u, err := account.ParseURL(url)
	if err != nil {
		return nil, err
	}
	cfg := &account.Config{URL: u, CAFile: ca, Password: account.PasswordSource{File: pwfile}}
	c, err := cfg.Dial(context.Background())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	folders, err := c.ListFolders()
	if err != nil {
		return nil, err
	}
	out := manifest{}
	for _, f := range folders {
		if !f.Selectable() {
			continue
		}
		sel, err := c.Examine(f.Name)
		if err != nil {
			return nil, err
		}
		name := strings.Join(f.Segments, "/")
		out[name] = []string{}
		if sel.NumMessages == 0 {
			continue
		}
		var all imap.UIDSet
		all.AddRange(1, 0)
		fc := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for {
			m := fc.Next()
			if m == nil {
				break
			}
			for {
				it := m.Next()
				if it == nil {
					break
				}
				if b, ok := it.(imapclient.FetchItemDataBodySection); ok && b.Literal != nil {
					var w io.Writer = io.Discard
					h := sha256.New()
					if hash {
						w = h
					}
					n, err := io.Copy(w, b.Literal)
					if err != nil {
						return nil, err
					}
					if n != b.Literal.Size() {
						return nil, fmt.Errorf("%s: a body of %d bytes came with %d", name, b.Literal.Size(), n)
					}
					out[name] = append(out[name], hex.EncodeToString(h.Sum(nil)))
				}
			}
		}
		if err := fc.Close(); err != nil {
			return nil, fmt.Errorf("FETCH in %s: %w", name, err)
		}
	}
	return out, nil
}

// readArchive hashes every message stored in a mailmove archive, read back
// the way import reads it.
func readArchive(root, identity string) (manifest, error) {
	a, err := archive.OpenReadOnly(root)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	if identity != "" {
		ids, err := archive.ReadIdentityFile(identity)
		if err == nil {
			err = a.SetIdentities(ids)
		}
		if err != nil {
			return nil, err
		}
	}
	out := manifest{}
	for _, folder := range a.Folders() {
		recs, err := a.Records(folder)
		if err != nil {
			return nil, err
		}
		out[folder] = []string{}
		for _, r := range recs {
			rc, err := a.OpenMessage(r)
			if err != nil {
				return nil, err
			}
			h := sha256.New()
			_, err = io.Copy(h, rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			out[folder] = append(out[folder], hex.EncodeToString(h.Sum(nil)))
		}
	}
	return out, nil
}

func compare(want, got manifest, countOnly bool) error {
	var bad []string
	for f, w := range want {
		g := got[f]
		if len(g) != len(w) {
			bad = append(bad, fmt.Sprintf("%s: %d messages, want %d", f, len(g), len(w)))
			continue
		}
		if countOnly {
			continue
		}
		sort.Strings(g)
		for i := range w {
			if g[i] != w[i] {
				bad = append(bad, fmt.Sprintf("%s: the messages differ", f))
				break
			}
		}
	}
	for f, g := range got {
		if _, ok := want[f]; !ok && len(g) > 0 {
			bad = append(bad, fmt.Sprintf("%s: %d messages in a folder the source does not have", f, len(g)))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("verification failed:\n  %s", strings.Join(bad, "\n  "))
	}
	return nil
}

func writeManifest(p string, m manifest) error {
	for _, v := range m {
		sort.Strings(v)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o600)
}

func readManifest(p string) (manifest, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var m manifest
	return m, json.Unmarshal(b, &m)
}
