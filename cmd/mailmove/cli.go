package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// commands are the verbs mailmove knows, for "did you mean".
var commands = []string{"export", "folders", "import", "migrate", "check", "verify", "backup", "schedule", "login", "version", "help"}

// suggest returns the known command closest to s, or "" when none is
// close enough (an edit distance of at most 2, a swap of two neighbouring
// letters counting as one).
func suggest(s string) string {
	best, bestD := "", 3
	for _, c := range commands {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD > 1 && len(s) <= 3 {
		return "" // "ls" is not "check"
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours count one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// wantsHelp reports whether args ask for help before any "--".
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "-h=true", "--help=true":
			return true
		}
	}
	return false
}

// parseArgs parses a command's flags wherever they stand among its
// positional arguments (mailmove check DIR --json), unlike Go's flag
// package, which stops at the first positional one; everything after "--"
// is positional. Help asked for goes to stdout, with exit code 0. When ok
// is false the command ends with code (0 after help, 2 after a bad flag).
func parseArgs(fs *flag.FlagSet, args []string, stdout io.Writer) (pos []string, code int, ok bool) {
	if wantsHelp(args) {
		fs.SetOutput(stdout)
	}
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// statusLine shows on a terminal what a command is doing before its
// progress bar can start (connecting, logging in, listing folders): one
// line on stderr with a spinner, erased when cleared. A nil statusLine
// shows nothing (stderr is not a terminal, or --quiet).
type statusLine struct {
	mu      sync.Mutex
	w       io.Writer
	msg     string
	shown   bool // the line is on screen
	done    bool
	stopped chan struct{}
	stop    chan struct{}
}

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// newStatusLine starts a status line on w when on is set, else returns nil.
func newStatusLine(w io.Writer, on bool, msg string) *statusLine {
	if !on {
		return nil
	}
	s := &statusLine{w: w, msg: msg, stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.spin()
	return s
}

func (s *statusLine) spin() {
	defer close(s.stopped)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		s.mu.Lock()
		switch {
		case s.msg != "":
			fmt.Fprintf(s.w, "\r\033[K%s %s", spinnerFrames[i%len(spinnerFrames)], s.msg)
			s.shown = true
		case s.shown:
			// paused (a password prompt): erase the line once
			fmt.Fprint(s.w, "\r\033[K")
			s.shown = false
		}
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// set changes the message; an empty one pauses the line (erased at once,
// for a password prompt), the next one shows it again. After clear it does
// nothing.
func (s *statusLine) set(msg string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msg = msg
	if msg == "" && s.shown && !s.done {
		fmt.Fprint(s.w, "\r\033[K")
		s.shown = false
	}
}

// clear stops the spinner and erases its line. It may be called more than
// once.
func (s *statusLine) clear() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	close(s.stop)
	s.mu.Unlock()
	<-s.stopped
	fmt.Fprint(s.w, "\r\033[K")
}
