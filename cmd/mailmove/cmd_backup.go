package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/config"
	"github.com/mailmove/mailmove/export"
	"github.com/mailmove/mailmove/formats/archive"
)

// defaultLockWait is how long backup waits for an archive another mailmove
// holds: long enough to ride out the end of an overlapping run, short
// enough that runs from a timer never pile up.
const defaultLockWait = time.Minute

// onFailureTimeout bounds a job's on_failure command.
const onFailureTimeout = 2 * time.Minute

// Job statuses in the output of backup.
const (
	jobOK      = "ok"
	jobPartial = "partial" // some messages could not be exported (exit 3)
	jobFailed  = "failed"  // the job did not run through (exit 1)
	jobLocked  = "locked"  // another mailmove held the archive (exit 5)
)

// jobResult is what one backup job did.
type jobResult struct {
	job      *config.Job
	account  string
	status   string
	err      error
	sum      *export.Summary
	started  time.Time
	hookErr  error
	summary  string
	mirrored int
}

// backupOptions are backup's command line, with the configuration file
// it names and the jobs to run.
type backupOptions struct {
	parallel               int
	lockWait               time.Duration
	jsonOut, mirror, quiet bool
	logFile                string
	cfg                    *config.Config
	jobs                   []*config.Job
}

// cmdBackup runs the jobs of the configuration file, each an incremental
// export into its archive.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseBackup(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runBackup(ctx, o, stdout, stderr)
}

// parseBackup reads backup's command line and checks it; it loads the
// configuration file and finds the jobs named.
func parseBackup(args []string, stdout, stderr io.Writer) (*backupOptions, error) {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &backupOptions{}
	cfgPath := fs.String("config", "", "the configuration `file` (default $XDG_CONFIG_HOME/mailmove/config.toml)")
	fs.IntVar(&o.parallel, "parallel", 1, "run up to `n` jobs at once")
	fs.DurationVar(&o.lockWait, "lock-wait", defaultLockWait, "when another mailmove holds a job's archive, wait this `long` for it, then give up on that job (exit code 5)")
	fs.BoolVar(&o.jsonOut, "json", false, "print a machine-readable summary of every job on stdout")
	fs.StringVar(&o.logFile, "log", "", "append one line per job and run to this `file` (time, job, status, new messages, bytes, errors)")
	fs.BoolVar(&o.mirror, "mirror", false, "move archived messages deleted on the server into the archive's .deleted/ area (every job; a job can set mirror = true)")
	fs.BoolVar(&o.quiet, "quiet", false, "print nothing but failures, even on a terminal")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove backup [flags] [JOB...]\n\nRuns the jobs of the configuration file (all of them, or those named), each an\nincremental export into its archive. Quiet on success unless stderr is a terminal;\none line per failed job on stderr. Exit codes: 0 all done, 1 a job failed,\n2 configuration or usage error, 3 some messages could not be exported,\n5 an archive was held by another mailmove for longer than --lock-wait.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if o.parallel < 1 {
		return nil, usagef("backup", "--parallel must be at least 1")
	}
	path := *cfgPath
	if path == "" {
		if path, err = config.DefaultPath(); err != nil {
			return nil, usagef("backup", "%v", err)
		}
	}
	cfg, err := config.Load(path)
	if err != nil {
		failJSON(stdout, o.jsonOut, "backup", err)
		return nil, usagef("backup", "%v", err)
	}
	o.cfg = cfg
	names := pos
	if len(names) == 0 {
		names = cfg.Order
	}
	if len(names) == 0 {
		return nil, usagef("backup", "%s defines no job: add a [jobs.NAME] table (see the README, \"Backups\")", path)
	}
	for _, n := range names {
		j := cfg.Jobs[n]
		if j == nil {
			return nil, usagef("backup", "no job %q in %s (jobs: %s)", n, path, strings.Join(cfg.Order, ", "))
		}
		o.jobs = append(o.jobs, j)
	}
	return o, nil
}

// runBackup runs the jobs, up to o.parallel at once, and reports each; the
// outcome is backupOutcome's.
func runBackup(ctx context.Context, o *backupOptions, stdout, stderr io.Writer) error {
	cfg, jobs := o.cfg, o.jobs
	tty := !o.quiet && !o.jsonOut && isTerminal(os.Stderr)
	results := make([]*jobResult, len(jobs))
	sem := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	var outMu sync.Mutex
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := runBackupJob(ctx, j, cfg.Accounts[j.Account], o.lockWait, o.mirror, stderr)
			results[i] = r
			if r.status != jobOK && j.OnFailure != "" {
				r.hookErr = runOnFailure(j, cfg, r)
			}
			outMu.Lock()
			defer outMu.Unlock()
			switch {
			case r.status != jobOK:
				fmt.Fprintf(stderr, "mailmove backup: %s\n", r.summary)
			case tty:
				fmt.Fprintln(stderr, r.summary)
			}
			if r.hookErr != nil {
				fmt.Fprintf(stderr, "mailmove backup: job %s: the on_failure command failed: %v\n", j.Name, r.hookErr)
			}
		}()
	}
	wg.Wait()
	if o.logFile != "" {
		if err := appendLog(o.logFile, results); err != nil {
			fmt.Fprintf(stderr, "mailmove backup: writing the log %s: %v\n", o.logFile, err)
		}
	}
	if o.jsonOut {
		writeJSON(stdout, newBackupReport(results))
	}
	return backupOutcome(results)
}

// backupOutcome is the outcome of a backup run, each job having been
// reported already: a failed job (errFailedShown) wins over a locked
// archive (errLocked), which wins over messages not exported (errPartial);
// nil when every job is done.
func backupOutcome(results []*jobResult) error {
	rank := map[string]int{jobOK: 0, jobPartial: 1, jobLocked: 2, jobFailed: 3}
	outcomes := map[string]error{jobPartial: errPartial, jobLocked: errLocked, jobFailed: errFailedShown}
	var out error
	best := 0
	for _, r := range results {
		if rank[r.status] > best {
			best, out = rank[r.status], outcomes[r.status]
		}
	}
	return out
}

// NoPasswordError is an account of the configuration file with no
// password to give when there is no terminal to ask on (cron, systemd).
type NoPasswordError struct {
	// Account is the account's name; Env its password_env, if any.
	Account, Env string
}

func (e *NoPasswordError) Error() string {
	if e.Env != "" {
		return fmt.Sprintf("account %s: $%s (its password_env) is empty or unset, and there is no terminal to ask on: set it in the environment the backup runs in, or use password_file or password_cmd", e.Account, e.Env)
	}
	return fmt.Sprintf("account %s has no password_file, password_cmd or password_env, and there is no terminal to ask on: add one to [accounts.%s]", e.Account, e.Account)
}

// haveTTY reports whether a password can be asked for on the terminal.
func haveTTY() bool {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return isTerminal(f)
}

// jobSetup is how a job's archive is opened and exported.
type jobSetup struct {
	format archive.Format
	lf     bool
	layout string
	// sealing is the job's encrypt_to and compress (see exportSetup).
	sealing archive.Sealing
	// opts lacks Account, Conn and Archive, which the run fills in.
	opts export.Options
}

// exportSetup builds the export options of a job: the one place where a
// job's settings become export's. The archive writer's encryption and
// compression options (encrypt_to, compress) are set here.
func exportSetup(j *config.Job, mirror bool) (*jobSetup, error) {
	sealing, err := sealingFlags(j.EncryptTo, nil, j.Compress)
	if err != nil {
		return nil, fmt.Errorf("job %s: %v", j.Name, err)
	}
	s := &jobSetup{format: archive.Format(j.Format), lf: j.MboxLineEndings != "crlf", layout: j.MboxLayout, sealing: sealing}
	labels := export.LabelsAsMetadata
	if j.BridgeLabels != "" {
		labels = export.LabelMode(j.BridgeLabels)
	}
	s.opts = export.Options{
		Include:      j.Folders,
		Exclude:      j.Exclude,
		Connections:  j.Connections,
		Labels:       labels,
		RefreshFlags: j.RefreshFlags,
		Mirror:       mirror || j.Mirror,
	}
	return s, nil
}

// accountConfig is the account.Config of a configured account.
func accountConfig(a *config.Account) (*account.Config, error) {
	u, err := account.ParseURL(a.URL)
	if err != nil {
		return nil, err
	}
	timeout := a.Timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	return &account.Config{
		URL:         u,
		CAFile:      a.CAFile,
		Fingerprint: a.Fingerprint,
		IdleTimeout: timeout,
		Version:     version,
		Password: account.PasswordSource{
			File:    a.PasswordFile,
			Command: a.PasswordCmd,
			Env:     a.PasswordEnv,
			Prompt:  "Password for account " + a.Name + " (" + u.String() + "): ",
		},
	}, nil
}

// runBackupJob runs one job: connect, take the archive's lock (waiting up
// to lockWait), export what is new.
func runBackupJob(ctx context.Context, j *config.Job, a *config.Account, lockWait time.Duration, mirror bool, stderr io.Writer) *jobResult {
	r := &jobResult{job: j, started: time.Now()}
	r.err = func() error {
		setup, err := exportSetup(j, mirror)
		if err != nil {
			return err
		}
		cfg, err := accountConfig(a)
		if err != nil {
			return err
		}
		r.account = cfg.URL.String()
		if a.PasswordFile == "" && a.PasswordCmd == "" && (a.PasswordEnv == "" || os.Getenv(a.PasswordEnv) == "") && !haveTTY() {
			return &NoPasswordError{Account: a.Name, Env: a.PasswordEnv}
		}
		// Log in before the archive is created or locked: a wrong password
		// leaves nothing behind.
		conn, err := cfg.Dial(ctx)
		if err != nil {
			return err
		}
		tool := "mailmove " + version
		arch, err := archive.OpenWait(ctx, j.Out, setup.format, setup.lf, setup.layout, tool, setup.sealing, 0)
		if errors.Is(err, archive.ErrLocked) && lockWait > 0 {
			// Another run holds the archive: wait without holding an idle
			// connection, and log in again once the archive is ours.
			conn.Logout().Wait()
			conn.Close()
			conn = nil
			if arch, err = archive.OpenWait(ctx, j.Out, setup.format, setup.lf, setup.layout, tool, setup.sealing, lockWait); err == nil {
				if conn, err = cfg.Dial(ctx); err != nil {
					arch.Close()
					return err
				}
			}
		}
		if err != nil {
			if conn != nil {
				conn.Logout().Wait()
				conn.Close()
			}
			return err
		}
		arch.StatusHeaders = j.MboxStatusHeaders
		o := setup.opts
		o.Account, o.Conn, o.Archive = cfg, conn, arch
		sum, runErr := export.Run(ctx, o)
		if err := arch.Close(); err != nil && runErr == nil {
			runErr = fmt.Errorf("saving the archive state: %w", err)
		}
		r.sum = sum
		return runErr
	}()
	if r.sum != nil {
		r.mirrored = r.sum.Mirrored
	}
	errText := ""
	if r.err != nil {
		// one line per job: the advice of a multi-line error joins it
		errText = strings.Join(strings.Fields(strings.ReplaceAll(r.err.Error(), "\n", " ; ")), " ")
		errText = strings.ReplaceAll(errText, " ; ", "; ")
	}
	switch {
	case errors.Is(r.err, context.Canceled):
		r.status = jobFailed
		r.summary = fmt.Sprintf("job %s interrupted; what was written is safe, run the same command again to finish", j.Name)
	case errors.Is(r.err, archive.ErrLocked):
		r.status = jobLocked
		r.summary = fmt.Sprintf("job %s: %s (exit code %d)", j.Name, errText, exitLocked)
	case r.err != nil:
		r.status = jobFailed
		r.summary = fmt.Sprintf("job %s failed: %s", j.Name, errText)
		if r.sum != nil && r.sum.Messages > 0 {
			r.summary += fmt.Sprintf(" (%d new messages were written before the failure; they are safe, the next run goes on from there)", r.sum.Messages)
		}
	case len(r.sum.Failed)+len(r.sum.Undecryptable) > 0:
		r.status = jobPartial
		var parts []string
		if n := len(r.sum.Failed); n > 0 {
			f := r.sum.Failed[0]
			where := "folder " + f.Folder
			if f.UID != 0 {
				where = fmt.Sprintf("%s UID %d", f.Folder, f.UID)
			}
			parts = append(parts, fmt.Sprintf("%d could not be exported (first: %s: %s), the next run tries them again", n, where, f.Error))
		}
		if n := len(r.sum.Undecryptable); n > 0 {
			f := r.sum.Undecryptable[0]
			parts = append(parts, fmt.Sprintf("%d Proton Mail Bridge could not decrypt (first: %s UID %d), archived as Bridge served them", n, f.Folder, f.UID))
		}
		r.summary = fmt.Sprintf("job %s: %d new messages; %s; mailmove export --json lists them all", j.Name, r.sum.Messages, strings.Join(parts, "; "))
	default:
		r.status = jobOK
		r.summary = fmt.Sprintf("%s: %d new messages (%s) into %s in %s", j.Name, r.sum.Messages, humanBytes(r.sum.Bytes), j.Out, r.sum.Elapsed.Round(10*time.Millisecond))
		if r.mirrored > 0 {
			r.summary += fmt.Sprintf("; %d deleted on the server moved to .deleted/", r.mirrored)
		}
		if r.sum.BridgeSyncing {
			r.summary += "; Proton Mail Bridge may still be syncing: the next run gets the rest"
		}
	}
	return r
}

// runOnFailure runs the job's on_failure command with sh -c: the job's
// name, status, archive and summary in MAILMOVE_JOB, MAILMOVE_STATUS,
// MAILMOVE_ARCHIVE and MAILMOVE_SUMMARY, the summary on stdin too. The
// password variables (MAILMOVE_FROM_PASSWORD, MAILMOVE_TO_PASSWORD and the
// password_env of every account) are taken out of its environment.
func runOnFailure(j *config.Job, cfg *config.Config, r *jobResult) error {
	ctx, cancel := context.WithTimeout(context.Background(), onFailureTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", j.OnFailure)
	secret := map[string]bool{"MAILMOVE_FROM_PASSWORD": true, "MAILMOVE_TO_PASSWORD": true}
	for _, a := range cfg.Accounts {
		if a.PasswordEnv != "" {
			secret[a.PasswordEnv] = true
		}
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !secret[k] && !strings.HasPrefix(k, "MAILMOVE_JOB") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "MAILMOVE_JOB="+j.Name, "MAILMOVE_STATUS="+r.status, "MAILMOVE_ARCHIVE="+j.Out, "MAILMOVE_SUMMARY="+r.summary)
	cmd.Stdin = strings.NewReader(r.summary + "\n")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// appendLog adds one line per job to the log file: time, job, status, new
// messages, bytes, messages moved to .deleted/, messages that failed, the
// error.
func appendLog(path string, results []*jobResult) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, r := range results {
		var n, failed int
		var bytes int64
		var secs float64
		if r.sum != nil {
			n, bytes, failed, secs = r.sum.Messages, r.sum.Bytes, len(r.sum.Failed)+len(r.sum.Undecryptable), r.sum.Elapsed.Seconds()
		}
		errText := ""
		if r.err != nil {
			errText = r.err.Error()
		}
		fmt.Fprintf(&b, "%s job=%s status=%s new=%d bytes=%d deleted=%d failed=%d seconds=%.2f error=%s\n",
			r.started.UTC().Format(time.RFC3339), strconv.Quote(r.job.Name), r.status, n, bytes, r.mirrored, failed, secs, strconv.Quote(errText))
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// backupJobReport is one job in backup's --json summary.
type backupJobReport struct {
	Job       string `json:"job"`
	Account   string `json:"account"`
	Status    string `json:"status"`
	Error     string `json:"error,omitempty"`
	Mirrored  int    `json:"moved_to_deleted"`
	OnFailure string `json:"on_failure_error,omitempty"`
	*exportReport
}

type backupReport struct {
	header
	OK   bool              `json:"ok"`
	Jobs []backupJobReport `json:"jobs"`
}

func newBackupReport(results []*jobResult) *backupReport {
	rep := &backupReport{header: newHeader("backup"), OK: true, Jobs: []backupJobReport{}}
	for _, r := range results {
		jr := backupJobReport{Job: r.job.Name, Account: r.account, Status: r.status, Mirrored: r.mirrored, exportReport: newExportReport(r.sum, r.err, r.job.Out)}
		if r.err != nil {
			jr.Error = r.err.Error()
		}
		if r.hookErr != nil {
			jr.OnFailure = r.hookErr.Error()
		}
		rep.OK = rep.OK && r.status == jobOK
		rep.Jobs = append(rep.Jobs, jr)
	}
	return rep
}
