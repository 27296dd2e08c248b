package mbox

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

var testDate = time.Date(2024, 3, 5, 6, 8, 9, 0, time.UTC)

// roundTrip writes msgs into one mbox and reads them back.
func roundTrip(t testing.TB, lf bool, msgs ...[]byte) ([]byte, [][]byte) {
	t.Helper()
	var file bytes.Buffer
	w := NewWriter(&file, lf)
	for _, m := range msgs {
		n, err := w.WriteMessage("sender@example.org", testDate, bytes.NewReader(m))
		if err != nil {
			t.Fatal(err)
		}
		_ = n
	}
	r := NewReader(bytes.NewReader(file.Bytes()))
	var got [][]byte
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Sender != "sender@example.org" || !m.Date.Equal(testDate) {
			t.Fatalf("From_ line %q parsed as %q %v", m.FromLine, m.Sender, m.Date)
		}
		b, err := io.ReadAll(m)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b)
	}
	return file.Bytes(), got
}

func TestNastyCases(t *testing.T) {
	cases := map[string]string{
		"from lines":       "Subject: x\r\n\r\nFrom me\r\n>From you\r\n>>From x\r\nFrom\r\n>From\r\nend\r\n",
		"from at start":    "From: a@b\r\n\r\nbody\r\n",
		"lf":               "Subject: lf\n\nFrom here\n>From there\nbye\n",
		"empty body":       "Subject: empty\r\n\r\n",
		"empty message":    "",
		"blank lines":      "Subject: b\r\n\r\n\r\n\r\nFrom x\r\n\r\n\r\n",
		"8-bit header":     "Subject: Grüße \xff\xfe\r\nFrom: \"Jörg\" <j@example.org>\r\n\r\nbody\r\n",
		"bare cr":          "Subject: cr\r\n\r\na\rb\r\nFrom\r\r\n",
		"gt only lines":    "S: x\r\n\r\n>\r\n>>\r\n>>>Fro\r\n>Fromage\r\n",
		"long line":        "S: x\r\n\r\n" + strings.Repeat("From ", 40000) + "\r\n",
		"nul bytes":        "S: x\r\n\r\na\x00b\r\n",
		"mixed endings":    "S: x\n\r\nFrom a\nFrom b\r\n",
		"trailing blank 2": "S: x\r\n\r\nbody\r\n\r\n",
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			other := []byte("Subject: second\r\n\r\nFrom the second\r\n")
			_, got := roundTrip(t, false, []byte(msg), other)
			if len(got) != 2 {
				t.Fatalf("read %d messages, want 2", len(got))
			}
			if !bytes.Equal(got[0], []byte(msg)) {
				t.Errorf("first message:\n got %q\nwant %q", got[0], msg)
			}
			if !bytes.Equal(got[1], other) {
				t.Errorf("second message:\n got %q\nwant %q", got[1], other)
			}
		})
	}
}

func TestQuotingOnDisk(t *testing.T) {
	file, _ := roundTrip(t, false, []byte("S: x\r\n\r\nFrom a\r\n>From b\r\n>>From c\r\nFrom\r\n"))
	want := "From sender@example.org Tue Mar  5 06:08:09 2024\r\nS: x\r\n\r\n>From a\r\n>>From b\r\n>>>From c\r\nFrom\r\n\r\n"
	if string(file) != want {
		t.Fatalf("file:\n got %q\nwant %q", file, want)
	}
}

func TestNoTrailingNewline(t *testing.T) {
	msg := "Subject: x\r\n\r\nno newline at the end"
	file, got := roundTrip(t, false, []byte(msg), []byte("S: 2\r\n\r\n"))
	if !bytes.Contains(file, []byte("the end\r\n\r\nFrom ")) {
		t.Fatalf("file %q", file)
	}
	// The message gains exactly one line ending; the index's size trims it.
	if string(got[0]) != msg+"\r\n" {
		t.Fatalf("got %q", got[0])
	}
}

func TestLFMode(t *testing.T) {
	msg := "Subject: x\r\n\r\nFrom a\r\nline\rcr\r\nend\r\n"
	file, got := roundTrip(t, true, []byte(msg))
	want := "From sender@example.org Tue Mar  5 06:08:09 2024\nSubject: x\n\n>From a\nline\rcr\nend\n\n"
	if string(file) != want {
		t.Fatalf("file:\n got %q\nwant %q", file, want)
	}
	if string(got[0]) != strings.ReplaceAll(msg, "\r\n", "\n") {
		t.Fatalf("got %q", got[0])
	}
}

func TestReadForeign(t *testing.T) {
	// mboxo as Python's mailbox writes it: LF, '>From ' for body 'From '.
	mboxo := "From MAILER-DAEMON Thu Jun 11 00:38:38 2020\nSubject: a\n\n>From the body\n\nFrom MAILER-DAEMON Thu Jun 11 00:38:39 2020\nSubject: b\n\nx\n\n"
	r := NewReader(strings.NewReader(mboxo))
	var bodies []string
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(m)
		bodies = append(bodies, string(b))
	}
	if len(bodies) != 2 || bodies[0] != "Subject: a\n\nFrom the body\n" || bodies[1] != "Subject: b\n\nx\n" {
		t.Fatalf("got %q", bodies)
	}
	// Gmail Takeout postmark.
	s, d, _ := ParseFromLine("From 1669160939957813740@xxx Thu Jun 11 00:38:38 +0000 2020\r\n")
	if s != "1669160939957813740@xxx" || !d.Equal(time.Date(2020, 6, 11, 0, 38, 38, 0, time.UTC)) {
		t.Fatalf("takeout postmark: %q %v", s, d)
	}
	if _, err := NewReader(strings.NewReader("Subject: not mbox\n")).Next(); err != ErrNotMbox {
		t.Fatalf("want ErrNotMbox, got %v", err)
	}
}

func TestSkipUnread(t *testing.T) {
	var file bytes.Buffer
	w := NewWriter(&file, false)
	for i := 0; i < 3; i++ {
		w.WriteMessage("", testDate, strings.NewReader("S: x\r\n\r\nbody\r\n"))
	}
	r := NewReader(&file)
	n := 0
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Sender != "MAILER-DAEMON" {
			t.Fatalf("sender %q", m.Sender)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("got %d messages", n)
	}
}

// patternReader yields a big message without holding it in memory.
type patternReader struct{ left int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	line := "From QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3\r\n"
	n := 0
	for n < len(b) && p.left > 0 {
		c := copy(b[n:], line)
		if int64(c) > p.left {
			c = int(p.left)
		}
		n += c
		p.left -= int64(c)
		if c < len(line) {
			break
		}
	}
	return n, nil
}

func Test30MBMessage(t *testing.T) {
	const size = 30 << 20
	h := sha256.New()
	io.Copy(h, &patternReader{left: size})
	want := h.Sum(nil)

	var file bytes.Buffer
	if _, err := NewWriter(&file, false).WriteMessage("a@b", testDate, &patternReader{left: size}); err != nil {
		t.Fatal(err)
	}
	data := file.Bytes()
	m, err := NewReader(bytes.NewReader(data)).Next()
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	n, err := io.Copy(h, m)
	if err != nil {
		t.Fatal(err)
	}
	// the pattern ends in the middle of a line, so one CRLF is added
	if n != size+2 {
		t.Fatalf("read %d bytes, want %d", n, size+2)
	}
	m2, _ := NewReader(bytes.NewReader(data)).Next()
	h.Reset()
	io.Copy(h, io.LimitReader(m2, size))
	if !bytes.Equal(h.Sum(nil), want) {
		t.Fatal("30 MB message changed in the round trip")
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nFrom me\r\n>From you\r\n"), false)
	f.Add([]byte("a\n\nFrom b\n\n"), true)
	f.Add([]byte(">>>From \r\r\n\r\n"), false)
	f.Add([]byte(""), false)
	f.Fuzz(func(t *testing.T, msg []byte, lf bool) {
		second := []byte("S: 2\r\n\r\nFrom x\r\n")
		_, got := roundTrip(t, lf, msg, second)
		want := msg
		want2 := second
		if lf {
			// CRLF becomes LF up to the first bare LF; from there on the
			// bytes are kept as they are (Written.RawFrom, given back by
			// ToCRLF)
			raw := len(msg)
			for i, c := range msg {
				if c == '\n' && (i == 0 || msg[i-1] != '\r') {
					raw = i
					break
				}
			}
			want = append(bytes.ReplaceAll(msg[:raw], []byte("\r\n"), []byte("\n")), msg[raw:]...)
			want2 = bytes.ReplaceAll(second, []byte("\r\n"), []byte("\n"))
		}
		if len(want) > 0 && want[len(want)-1] != '\n' {
			if lf {
				want = append(want, '\n')
			} else {
				want = append(want, '\r', '\n')
			}
		}
		if len(got) != 2 {
			t.Fatalf("%q: read %d messages", msg, len(got))
		}
		if !bytes.Equal(got[0], want) || !bytes.Equal(got[1], want2) {
			t.Fatalf("round trip of %q (lf=%v): got %q", msg, lf, got)
		}
	})
}

func TestReadMboxcl2(t *testing.T) {
	// As Dovecot writes it: Content-Length, body From lines not quoted.
	body1 := "From the body, unquoted\nand >From this\n"
	body2 := "second\n"
	file := "From MAILER-DAEMON Thu Jun 11 00:38:38 2020\nSubject: a\nContent-Length: " + fmt.Sprint(len(body1)) + "\n\n" + body1 +
		"\nFrom MAILER-DAEMON Thu Jun 11 00:38:39 2020\nSubject: b\nContent-Length: " + fmt.Sprint(len(body2)) + "\n\n" + body2 + "\n"
	f := filepath.Join(t.TempDir(), "cl2")
	os.WriteFile(f, []byte(file), 0o600)
	fh, _ := os.Open(f)
	defer fh.Close()
	got := readAll(t, NewReader(fh))
	want := []string{"Subject: a\nContent-Length: " + fmt.Sprint(len(body1)) + "\n\n" + body1, "Subject: b\nContent-Length: 7\n\n" + body2}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	// A Content-Length that does not land on a From_ line is ignored.
	bad := "From x Thu Jun 11 00:38:38 2020\nContent-Length: 3\n\nhello\n>From quoted\n\nFrom y Thu Jun 11 00:38:39 2020\nS: 2\n\nx\n"
	os.WriteFile(f, []byte(bad), 0o600)
	fh2, _ := os.Open(f)
	defer fh2.Close()
	got = readAll(t, NewReader(fh2))
	if len(got) != 2 || got[0] != "Content-Length: 3\n\nhello\nFrom quoted\n" {
		t.Fatalf("bad Content-Length: got %q", got)
	}
	// and not used at all when switched off
	fh3, _ := os.Open(f)
	defer fh3.Close()
	r := NewReader(fh3)
	r.ContentLength = false
	if got := readAll(t, r); len(got) != 2 {
		t.Fatalf("got %q", got)
	}
}

func readAll(t *testing.T, r *Reader) []string {
	var out []string
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
}

func TestOffsets(t *testing.T) {
	var file bytes.Buffer
	w := NewWriter(&file, false)
	var offs []int64
	for i := 0; i < 3; i++ {
		offs = append(offs, int64(file.Len()))
		w.WriteMessage("", testDate, strings.NewReader(fmt.Sprintf("S: %d\r\n\r\nFrom x\r\n", i)))
	}
	r := NewReader(bytes.NewReader(file.Bytes()))
	for i := 0; ; i++ {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if m.Offset != offs[i] {
			t.Fatalf("message %d at %d, want %d", i, m.Offset, offs[i])
		}
	}
}

// An LF Writer's messages come back exactly through ToCRLF, whatever their
// line endings: CRLF (converted), bare LF (kept from the first one on),
// CR CR LF, lone CRs, split across writes of any size.
func TestLFGivesBackExactly(t *testing.T) {
	cases := map[string]string{
		"crlf":              "Subject: a\r\n\r\nbody\r\nFrom x\r\n",
		"lf only":           "Subject: a\n\nbody\nFrom x\n",
		"mixed, lf in body": "Subject: a\r\n\r\nline\r\nbare\nthen\r\nmore\n",
		"cr cr lf":          "Subject: a\r\n\r\nx\r\r\ny\r\n",
		"lone cr":           "Subject: a\r\n\r\na\rb\r\nend\r",
		"cr at end":         "Subject: a\r\n\r\nend\r\r",
		"no final newline":  "Subject: a\r\n\r\nlast",
		"lf first":          "\nSubject: a\r\n",
		"empty":             "",
		"blank lines":       "S: x\r\n\r\n\r\n\r\nFrom x\r\n\r\n\r\n",
		"long lines":        "S: x\r\n\r\n" + strings.Repeat("y", 100000) + "\r\n" + strings.Repeat("z", 70000) + "\n" + strings.Repeat("w", 70000) + "\r\n",
	}
	for name, msg := range cases {
		for _, oneByte := range []bool{false, true} {
			var file bytes.Buffer
			w := NewWriter(&file, true)
			var src io.Reader = strings.NewReader(msg)
			if oneByte {
				src = iotest.OneByteReader(src)
			}
			res, err := w.WriteMessageInfo("a@b", testDate, src)
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != int64(file.Len()) {
				t.Errorf("%s: %d bytes said, %d written", name, res.Bytes, file.Len())
			}
			wantRaw := strings.Contains(strings.ReplaceAll(msg, "\r\n", ""), "\n")
			if (res.RawFrom >= 0) != wantRaw {
				t.Errorf("%s: RawFrom %d", name, res.RawFrom)
			}
			if name == "crlf" && strings.Contains(file.String(), "\r") {
				t.Errorf("%s: CRLF left in an LF file: %q", name, file.String())
			}
			m, err := NewReader(bytes.NewReader(file.Bytes())).Next()
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			rd := io.LimitReader(ToCRLF(m, res.RawFrom), int64(len(msg)))
			if oneByte {
				got, err = io.ReadAll(iotest.OneByteReader(rd))
			} else {
				got, err = io.ReadAll(rd)
			}
			if err != nil || string(got) != msg {
				t.Errorf("%s (one byte %v): got back\n%q\nwant\n%q (%v)", name, oneByte, got, msg, err)
			}
		}
	}
}

// BenchmarkToCRLF reads back a 4 MB message from an LF mbox, after checking
// that it comes back byte for byte.
func BenchmarkToCRLF(b *testing.B) {
	var msg bytes.Buffer
	for msg.Len() < 4<<20 {
		fmt.Fprintf(&msg, "line %d of a long message, with some text in it to look like mail\r\n", msg.Len())
	}
	var file bytes.Buffer
	if _, err := NewWriter(&file, true).WriteMessage("a@b", testDate, bytes.NewReader(msg.Bytes())); err != nil {
		b.Fatal(err)
	}
	read := func() []byte {
		m, err := NewReader(bytes.NewReader(file.Bytes())).Next()
		if err != nil {
			b.Fatal(err)
		}
		got, err := io.ReadAll(io.LimitReader(ToCRLF(m, -1), int64(msg.Len())))
		if err != nil {
			b.Fatal(err)
		}
		return got
	}
	if !bytes.Equal(read(), msg.Bytes()) {
		b.Fatal("the message did not come back byte for byte")
	}
	b.SetBytes(int64(msg.Len()))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := NewReader(bytes.NewReader(file.Bytes())).Next()
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, io.LimitReader(ToCRLF(m, -1), int64(msg.Len()))); err != nil || n != int64(msg.Len()) {
			b.Fatal(n, err)
		}
	}
}

// Empty lines before the first From_ line are no message, and the first
// message's offset is its From_ line's.
func TestBlankLinesBeforeFirstFrom(t *testing.T) {
	file := "\n\r\n\nFrom a Mon Jan  6 08:15:00 2025\nSubject: one\n\nbody\n\nFrom b Mon Jan  6 08:16:00 2025\nSubject: two\n\nbody 2\n"
	r := NewReader(strings.NewReader(file))
	var offs []int64
	var bodies []string
	for {
		m, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(m)
		offs = append(offs, m.Offset)
		bodies = append(bodies, string(b))
	}
	if len(bodies) != 2 || bodies[0] != "Subject: one\n\nbody\n" || offs[0] != 4 || !strings.HasPrefix(file[offs[1]:], "From b ") {
		t.Fatalf("offsets %v, messages %q", offs, bodies)
	}
	if _, err := NewReader(strings.NewReader("\n\nnot mbox\n")).Next(); err != ErrNotMbox {
		t.Fatalf("want ErrNotMbox, got %v", err)
	}
}
