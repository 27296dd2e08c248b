package account

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// CapError says a daily transfer cap was reached: the provider's (Gmail
// answers [OVERQUOTA] or [THROTTLED], or says BYE about bandwidth, once
// about 2 500 MB were downloaded or 500 MB uploaded over IMAP in a day), or
// the one set with --max-bytes-per-day. The run stopped cleanly: what was
// transferred is kept, and a run on the next day goes on from there.
type CapError struct {
	// Direction is "download" or "upload".
	Direction string
	// Own is set when the cap is --max-bytes-per-day, not the server's.
	Own bool
	// Limit is the own cap in bytes (Own only).
	Limit int64
	// Server is what the server said (not Own).
	Server string
}

func (e *CapError) Error() string {
	if e.Own {
		return fmt.Sprintf("stopped before going over --max-bytes-per-day (%d bytes a day, %s): what was transferred is safe; the same command run tomorrow goes on from there, and nothing is transferred twice", e.Limit, e.Direction)
	}
	return fmt.Sprintf("the server's daily %s cap is reached (%s): what was transferred is safe. The cap is per day (Gmail: about 2 500 MB of downloads and 500 MB of uploads over IMAP): run the same command again tomorrow, it goes on from there and transfers nothing twice; --max-bytes-per-day keeps a cron run under the cap", e.Direction, e.Server)
}

// AsCapError returns err as a *CapError when it is a provider's daily cap:
// a NO or BAD with [OVERQUOTA] or [THROTTLED] (when bandwidth says the
// server means transfer, not storage), or a BYE that mentions bandwidth.
// A storage quota ([OVERQUOTA] on APPEND with another text) is not one
// unless gmail is set (Gmail's APPEND answers [OVERQUOTA] for its upload
// cap). It returns nil otherwise.
func AsCapError(err error, direction string, gmail bool) *CapError {
	if err == nil {
		return nil
	}
	var ce *CapError
	if errors.As(err, &ce) {
		return ce
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		code := strings.ToUpper(string(ie.Code))
		lower := strings.ToLower(ie.Text)
		bw := strings.Contains(lower, "bandwidth")
		if code == "THROTTLED" || (code == string(imap.ResponseCodeOverQuota) && (gmail || bw || direction == "download")) ||
			(bw && strings.Contains(lower, "exceeded")) { // Workspace: "Account has exceeded the Gmail bandwidth limit ..."
			return &CapError{Direction: direction, Server: "[" + code + "] " + ie.Text}
		}
		return nil
	}
	var be *ByeError
	if errors.As(err, &be) && strings.Contains(strings.ToLower(be.Text), "bandwidth") {
		return &CapError{Direction: direction, Server: "BYE " + be.Text}
	}
	return nil
}

var backoffRE = regexp.MustCompile(`(?i)suggested backoff time:\s*(\d+)\s*milliseconds`)

// ThrottleBackoff reads Microsoft's throttling answer ("Request is
// throttled. Suggested Backoff Time: N milliseconds") from a server's NO or
// BAD and returns the wait it asks for.
func ThrottleBackoff(err error) (time.Duration, bool) {
	var ie *imap.Error
	if !errors.As(err, &ie) {
		return 0, false
	}
	m := backoffRE.FindStringSubmatch(ie.Text)
	if m == nil {
		return 0, false
	}
	ms, perr := strconv.ParseInt(m[1], 10, 64)
	if perr != nil || ms < 0 {
		return 0, false
	}
	return min(time.Duration(ms)*time.Millisecond, 10*time.Minute), true
}

// DailyBudget is --max-bytes-per-day: the bytes transferred with one account
// today (UTC), kept in a state file so that several runs in one day add up.
type DailyBudget struct {
	// Max is the cap in bytes a day.
	Max int64
	// Direction is "download" or "upload".
	Direction string

	path string
	mu   sync.Mutex
	day  string
	used int64
	now  func() time.Time
}

type budgetFile struct {
	Day  string `json:"day"`
	Used int64  `json:"bytes"`
}

// NewDailyBudget loads the day's count of an account (key: its URL) from
// dir (created 0700), for max bytes a day in direction.
func NewDailyBudget(dir, key, direction string, max int64) (*DailyBudget, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(direction + " " + key))
	b := &DailyBudget{Max: max, Direction: direction, path: filepath.Join(dir, hex.EncodeToString(sum[:8])+".json"), now: time.Now}
	b.day = b.today()
	data, err := os.ReadFile(b.path)
	if err == nil {
		var f budgetFile
		if json.Unmarshal(data, &f) == nil && f.Day == b.day {
			b.used = f.Used
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return b, nil
}

func (b *DailyBudget) today() string { return b.now().UTC().Format("2006-01-02") }

// Take reserves n bytes, or returns a *CapError when they would cross the
// cap (nothing is reserved then). A nil budget takes everything.
func (b *DailyBudget) Take(n int64) error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := b.today(); d != b.day {
		b.day, b.used = d, 0
	}
	if b.used+n > b.Max {
		return &CapError{Direction: b.Direction, Own: true, Limit: b.Max}
	}
	b.used += n
	return nil
}

// Used returns the bytes counted today.
func (b *DailyBudget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// Save writes the day's count (0600, atomically).
func (b *DailyBudget) Save() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	data, _ := json.Marshal(budgetFile{Day: b.day, Used: b.used})
	b.mu.Unlock()
	tmp := b.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, b.path)
}
