// Command verify checks that an IMAP account holds every message of
// another, for the benchmarks: per folder, the same number of messages
// and the same bytes (SHA-256 after CRLF normalisation, as a multiset, so
// a message missing and another twice do not cancel out). It exits 1 and
// says what differs when they are not the same, so that a benchmark never
// prints the time of an import that lost or duplicated mail.
//
//	verify --src imaps://src@127.0.0.1:10993 --dst imaps://dst@127.0.0.1:10993 \
//	       --ca-file cert.pem --password-file pw [--ignore-header X-TUID]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/mailmove/mailmove/account"
)

func main() {
	src := flag.String("src", "", "the account imported from (`URL`)")
	dst := flag.String("dst", "", "the account imported into (`URL`)")
	ca := flag.String("ca-file", "", "CA certificate of both (`file`)")
	pw := flag.String("password-file", "", "password of both (`file`)")
	var ignore multi
	flag.Var(&ignore, "ignore-header", "a header `field` left out of the comparison (mbsync adds X-TUID); repeatable")
	flag.Parse()
	if *src == "" || *dst == "" {
		flag.Usage()
		os.Exit(2)
	}
	want, err := held(*src, *ca, *pw, ignore)
	if err != nil {
		fmt.Fprintf(os.Stderr, "verify: reading %s: %v\n", *src, err)
		os.Exit(1)
	}
	got, err := held(*dst, *ca, *pw, ignore)
	if err != nil {
		fmt.Fprintf(os.Stderr, "verify: reading %s: %v\n", *dst, err)
		os.Exit(1)
	}
	var problems []string
	total := 0
	for _, f := range sortedKeys(want, got) {
		w, g := want[f], got[f]
		total += len(w)
		missing, extra := diff(w, g), diff(g, w)
		if missing > 0 || extra > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d messages, want %d (%d missing or changed, %d extra)", f, len(g), len(w), missing, extra))
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "verify: MISMATCH: %s does not hold every message of %s:\n  %s\n", *dst, *src, strings.Join(problems, "\n  "))
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "verify: %d messages in %d folders, byte for byte\n", total, len(want))
}

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// diff counts the messages of a that b lacks (multisets).
func diff(a, b map[string]int) int {
	n := 0
	for k, c := range a {
		if c > b[k] {
			n += c - b[k]
		}
	}
	return n
}

func sortedKeys(ms ...map[string]map[string]int) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// held returns, per folder, the multiset of message hashes.
func held(rawURL, ca, pwFile string, ignore []string) (map[string]map[string]int, error) {
	u, err := account.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg := &account.Config{URL: u, CAFile: ca, Password: account.PasswordSource{File: pwFile}}
	c, err := cfg.Dial(context.Background())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	folders, err := c.ListFolders()
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]int{}
	for _, f := range folders {
		if !f.Selectable() {
			continue
		}
		sel, err := c.Examine(f.Name)
		if err != nil {
			return nil, err
		}
		hashes := map[string]int{}
		out[f.Path()] = hashes
		if sel.NumMessages == 0 {
			continue
		}
		var all imap.UIDSet
		all.AddRange(1, 0)
		fc := c.Fetch(all, &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for m := fc.Next(); m != nil; m = fc.Next() {
			for it := m.Next(); it != nil; it = m.Next() {
				if bs, ok := it.(imapclient.FetchItemDataBodySection); ok && bs.Literal != nil {
					h, err := hashMessage(bs.Literal, ignore)
					if err != nil {
						fc.Close()
						return nil, err
					}
					hashes[h]++
				}
			}
		}
		if err := fc.Close(); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	return out, nil
}

// hashMessage is the SHA-256 of a message with CRLF line endings, without
// the ignored header fields.
func hashMessage(r io.Reader, ignore []string) (string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	h := sha256.New()
	inHeader, dropping := true, false
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if inHeader {
				switch {
				case len(bytes.TrimRight(line, "\r\n")) == 0:
					inHeader, dropping = false, false
				case line[0] == ' ' || line[0] == '\t':
				default:
					dropping = false
					name, _, _ := bytes.Cut(line, []byte(":"))
					for _, f := range ignore {
						if strings.EqualFold(string(bytes.TrimSpace(name)), f) {
							dropping = true
						}
					}
				}
			}
			if !dropping {
				if bytes.HasSuffix(line, []byte("\n")) && !bytes.HasSuffix(line, []byte("\r\n")) {
					line = append(line[:len(line)-1], '\r', '\n')
				}
				h.Write(line)
			}
		}
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", err
		}
	}
}
