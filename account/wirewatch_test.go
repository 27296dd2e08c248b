package account

import (
	"strconv"
	"testing"
	"time"
)

// TestWireWatch: the watch reads THROTTLED answers and BYEs from the
// server's bytes however they are cut, never from inside a literal (a
// message body), and a series ends after ThrottleClean clean OKs.
func TestWireWatch(t *testing.T) {
	old := ThrottleWait
	ThrottleWait = time.Second
	defer func() { ThrottleWait = old }()
	w := &wireWatch{}
	body := "From: a\r\n\r\nA9 OK [THROTTLED] not a response\r\n* BYE not one either\r\n"
	stream := "* 1 FETCH (UID 4 BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + body + ")\r\nA1 OK Success\r\n"
	for i := 0; i < len(stream); i += 7 { // cut anywhere
		w.feed([]byte(stream[i:min(i+7, len(stream))]))
	}
	c := &Conn{watch: w}
	if c.ThrottledAnswers() != 0 || c.Bye() != nil {
		t.Fatalf("read from a literal: %d throttled, bye %v", c.ThrottledAnswers(), c.Bye())
	}
	for i := 1; i <= ThrottleLimit; i++ {
		w.feed([]byte("A2 OK [THROTTLED] Success\r\n* 3 EXISTS\r\nA3 OK Success\r\n"))
		if d := w.due(); d != ThrottleWait<<(i-1) && d != time.Minute {
			t.Fatalf("wait %v after %d throttled answers", d, i)
		}
		if (c.Throttled() != nil) != (i >= ThrottleLimit) {
			t.Fatalf("after %d throttled answers: %v", i, c.Throttled())
		}
	}
	if w.due() != 0 {
		t.Fatal("a second wait for one answer")
	}
	for i := 0; i < ThrottleClean; i++ {
		w.feed([]byte("A4 OK Success\r\n"))
	}
	if c.Throttled() != nil {
		t.Fatal("the series did not end after clean answers")
	}
	w.feed([]byte("* BYE [UNAVAILABLE] Account exceeded its bandwidth limits.\r\n"))
	if ce := AsCapError(c.Bye(), "download", true); ce == nil {
		t.Fatalf("BYE %v is not a cap", c.Bye())
	}
}
