package account

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"time"
)

// Gmail slows a client down with a tagged OK carrying the THROTTLED
// response code ("A7 OK [THROTTLED] Success"): the command worked, but the
// client should go slower. go-imap does not report response codes of a
// tagged OK, so the connection go-imap speaks on is watched (wireWatch,
// above TLS): after a THROTTLED answer the next command waits before it
// is sent, ThrottleWait at first, twice as long for each THROTTLED answer
// of the series (at most a minute); ThrottleClean clean OKs in a row end
// the series (a cheap command answered OK between two throttled FETCHes
// does not). After ThrottleLimit THROTTLED answers in one series,
// Conn.Throttled returns a
// *CapError and the run stops cleanly like at a daily cap (exit 6; the
// next run goes on). The watch also keeps an untagged BYE, so that a BYE
// about bandwidth seen by go-imap (which only reports a closed connection)
// is recognised as a cap (Conn.Bye).

// ThrottleWait is the wait after the first THROTTLED answer (tests shorten
// it).
var ThrottleWait = 2 * time.Second

// ThrottleLimit is the number of THROTTLED answers in a row after which the
// run stops as at a daily cap.
const ThrottleLimit = 6

// ThrottleClean is the number of clean tagged OKs in a row that end a
// series of THROTTLED answers.
const ThrottleClean = 8

// wireWatch reads the server's responses as they pass (literals skipped).
type wireWatch struct {
	mu        sync.Mutex
	line      []byte // the start of the current line
	tail      []byte // its last bytes
	literal   int64
	inRow     int  // THROTTLED answers of the series
	clean     int  // clean OKs since the last THROTTLED
	waitDue   bool // the next command waits
	total     int
	bye       *ByeError
	lastThrot string
}

type watchConn struct {
	net.Conn
	w *wireWatch
}

func (c *watchConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.w.feed(p[:n])
	}
	return n, err
}

func (c *watchConn) Write(p []byte) (int, error) {
	if d := c.w.due(); d > 0 {
		time.Sleep(d)
	}
	return c.Conn.Write(p)
}

func (w *wireWatch) due() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.waitDue {
		return 0
	}
	w.waitDue = false
	d := ThrottleWait << min(max(w.inRow-1, 0), 10)
	return min(d, time.Minute)
}

func (w *wireWatch) feed(p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(p) > 0 {
		if w.literal > 0 {
			k := int64(len(p))
			if k > w.literal {
				k = w.literal
			}
			w.literal -= k
			p = p[k:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i+1]
		}
		if room := 256 - len(w.line); room > 0 {
			w.line = append(w.line, chunk[:min(room, len(chunk))]...)
		}
		w.tail = append(w.tail, chunk...)
		if len(w.tail) > 32 {
			w.tail = append(w.tail[:0], w.tail[len(w.tail)-32:]...)
		}
		p = p[len(chunk):]
		if i >= 0 {
			w.endLine()
		}
	}
}

func (w *wireWatch) endLine() {
	line, tail := w.line, bytes.TrimRight(w.tail, "\r\n")
	w.line, w.tail = w.line[:0], w.tail[:0]
	if j := bytes.LastIndexByte(tail, '{'); j >= 0 && bytes.HasSuffix(tail, []byte("}")) {
		if n, err := strconv.ParseInt(string(bytes.TrimSuffix(tail[j+1:len(tail)-1], []byte("+"))), 10, 64); err == nil {
			w.literal = n
		}
	}
	tag, rest, ok := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(" "))
	if !ok {
		return
	}
	up := bytes.ToUpper(rest)
	if string(tag) == "*" {
		if bytes.HasPrefix(up, []byte("BYE")) {
			w.bye = &ByeError{Text: string(bytes.TrimSpace(rest[3:]))}
		}
		return
	}
	if string(tag) == "+" || !bytes.HasPrefix(up, []byte("OK")) {
		return
	}
	if bytes.HasPrefix(up, []byte("OK [THROTTLED]")) {
		w.inRow++
		w.clean = 0
		w.total++
		w.waitDue = true
		w.lastThrot = string(rest)
		return
	}
	if w.clean++; w.clean >= ThrottleClean {
		w.inRow, w.waitDue = 0, false
	}
}

// Bye returns the BYE the server sent on this connection (nil if none).
func (c *Conn) Bye() *ByeError {
	if c.watch == nil {
		return nil
	}
	c.watch.mu.Lock()
	defer c.watch.mu.Unlock()
	return c.watch.bye
}

// Throttled returns a *CapError once the server answered ThrottleLimit
// commands of one series with OK [THROTTLED] (nil before).
func (c *Conn) Throttled() *CapError {
	if c.watch == nil {
		return nil
	}
	c.watch.mu.Lock()
	defer c.watch.mu.Unlock()
	if c.watch.inRow < ThrottleLimit {
		return nil
	}
	return &CapError{Direction: "download or upload", Server: c.watch.lastThrot + " (" + strconv.Itoa(c.watch.inRow) + " times, the client waiting longer each time)"}
}

// ThrottledAnswers counts the OK [THROTTLED] answers seen on this
// connection.
func (c *Conn) ThrottledAnswers() int {
	if c.watch == nil {
		return 0
	}
	c.watch.mu.Lock()
	defer c.watch.mu.Unlock()
	return c.watch.total
}
