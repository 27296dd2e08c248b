package export

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mailmove/mailmove/formats/archive"
	"github.com/mailmove/mailmove/internal/testmail"
)

// uidLastServer is a scripted IMAP server that answers a UID FETCH of
// bodies with the UID after the literal ("* 1 FETCH (BODY[] {n} ... UID
// 1)"), which is legal and which go-imap cannot match to its command.
func uidLastServer(t *testing.T, msgs []string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	body := func(i int, uidFirst bool) string {
		m := msgs[i-1]
		if uidFirst {
			return fmt.Sprintf("* %d FETCH (UID %d BODY[] {%d}\r\n%s)\r\n", i, i, len(m), m)
		}
		return fmt.Sprintf("* %d FETCH (BODY[] {%d}\r\n%s UID %d)\r\n", i, len(m), m, i)
	}
	serve := func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprint(c, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			up := strings.ToUpper(cmd)
			var out strings.Builder
			switch {
			case strings.HasPrefix(up, "CAPABILITY"):
				out.WriteString("* CAPABILITY IMAP4rev1\r\n")
			case strings.HasPrefix(up, "LIST"):
				out.WriteString("* LIST () \"/\" INBOX\r\n")
			case strings.HasPrefix(up, "STATUS"):
				fmt.Fprintf(&out, "* STATUS INBOX (MESSAGES %d UIDNEXT %d UIDVALIDITY 7)\r\n", len(msgs), len(msgs)+1)
			case strings.HasPrefix(up, "EXAMINE"), strings.HasPrefix(up, "SELECT"):
				fmt.Fprintf(&out, "* %d EXISTS\r\n* OK [UIDVALIDITY 7] v\r\n* OK [UIDNEXT %d] n\r\n* FLAGS (\\Seen)\r\n", len(msgs), len(msgs)+1)
			case strings.HasPrefix(up, "UID SEARCH"):
				out.WriteString("* SEARCH")
				for i := range msgs {
					fmt.Fprintf(&out, " %d", i+1)
				}
				out.WriteString("\r\n")
			case strings.HasPrefix(up, "UID FETCH") && strings.Contains(up, "RFC822.SIZE"):
				for i, m := range msgs {
					fmt.Fprintf(&out, "* %d FETCH (UID %d FLAGS (\\Seen) INTERNALDATE \"06-Jan-2025 09:15:00 +0000\" RFC822.SIZE %d)\r\n", i+1, i+1, len(m))
				}
			case strings.HasPrefix(up, "UID FETCH") && strings.Contains(up, "BODY.PEEK[]"):
				for i := range msgs {
					out.WriteString(body(i+1, false))
				}
			case strings.HasPrefix(up, "FETCH") && strings.Contains(up, "BODY.PEEK[]"):
				set := strings.Fields(cmd)[1]
				for _, part := range strings.Split(set, ",") {
					lo, hi, _ := strings.Cut(part, ":")
					a, _ := strconv.Atoi(lo)
					b := a
					if hi != "" {
						b, _ = strconv.Atoi(hi)
					}
					for i := a; i <= b; i++ {
						out.WriteString(body(i, false)) // still UID last: by sequence number it matches
					}
				}
			case strings.HasPrefix(up, "LOGOUT"):
				out.WriteString("* BYE\r\n")
			}
			fmt.Fprintf(&out, "%s OK done\r\n", tag)
			if _, err := c.Write([]byte(out.String())); err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func TestUIDAfterBodyFetchedBySequence(t *testing.T) {
	msgs := []string{"From: a@example.org\r\nSubject: one\r\n\r\nbody one\r\n", "From: b@example.org\r\nSubject: two\r\n\r\nbody two\r\n"}
	addr := uidLastServer(t, msgs)
	out := filepath.Join(t.TempDir(), "out")
	sum := export(t, testmail.MemConfig(t, addr), out, archive.EML, 1)
	if sum.Messages != 2 || len(sum.Failed) != 0 {
		t.Fatalf("exported %d, failures %v", sum.Messages, sum.Failed)
	}
	for _, r := range archived(t, out)["INBOX"] {
		b := readStored(t, out, archive.EML, r)
		if string(b) != msgs[r.UID-1] {
			t.Fatalf("UID %d: %q", r.UID, b)
		}
	}
}
