package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mailmove/mailmove/config"
)

// cronMark ends the crontab line that schedule writes, so that --install
// replaces it instead of adding a second one.
const cronMark = "# mailmove backup (mailmove schedule --cron)"

// Unit file names of schedule --systemd.
const (
	unitService = "mailmove-backup.service"
	unitTimer   = "mailmove-backup.timer"
)

// cmdSchedule prints (or installs) what runs 'mailmove backup' every day:
// a systemd user service and timer, or a crontab line.
func cmdSchedule(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseSchedule(args, stdout, stderr)
	if err != nil {
		return err
	}
	return runSchedule(ctx, o, stdout, stderr)
}

// scheduleOptions are schedule's command line.
type scheduleOptions struct {
	systemd, cron, install bool
	// cfgPath is --config as given; path is the configuration file the
	// job reads (absolute, or the default).
	cfgPath, path string
	// hour and minute are --at.
	hour, minute int
}

// parseSchedule reads schedule's command line and checks it, and the
// configuration the job will read.
func parseSchedule(args []string, stdout, stderr io.Writer) (*scheduleOptions, error) {
	fs := flag.NewFlagSet("schedule", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &scheduleOptions{}
	fs.BoolVar(&o.systemd, "systemd", false, "a systemd user service and timer")
	fs.BoolVar(&o.cron, "cron", false, "a crontab line")
	fs.BoolVar(&o.install, "install", false, "install them: write the units to ~/.config/systemd/user/, or add the line to your crontab (crontab -)")
	fs.StringVar(&o.cfgPath, "config", "", "the configuration `file` the backup reads (default $XDG_CONFIG_HOME/mailmove/config.toml; named in the job unless it is ~/.config/mailmove/config.toml)")
	at := fs.String("at", "03:17", "the time of day to run, `HH:MM` (systemd adds up to 15 minutes at random; a missed run happens at the next boot)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove schedule --systemd|--cron [--install] [--config FILE] [--at HH:MM]\n\nPrints (or installs) what runs 'mailmove backup' every day: a systemd user\nservice and timer, or a crontab line.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return nil, err
	}
	if len(pos) > 0 || o.systemd == o.cron {
		return nil, usagef("schedule", "give one of --systemd and --cron")
	}
	if !atRE.MatchString(*at) {
		return nil, usagef("schedule", "--at %q: want HH:MM, e.g. 03:17", *at)
	}
	if n, err := fmt.Sscanf(*at, "%d:%d", &o.hour, &o.minute); err != nil || n != 2 || o.hour < 0 || o.hour > 23 || o.minute < 0 || o.minute > 59 || len(*at) > 5 {
		return nil, usagef("schedule", "--at %q: want HH:MM, e.g. 03:17", *at)
	}
	// The job runs the configuration as it is now: refuse a broken one.
	o.path = o.cfgPath
	if o.path == "" {
		var err error
		if o.path, err = config.DefaultPath(); err != nil {
			return nil, usagef("schedule", "%v", err)
		}
	} else if abs, err := filepath.Abs(o.path); err == nil {
		o.path = abs
	}
	if _, err := config.Load(o.path); err != nil {
		return nil, usagef("schedule", "%v", err)
	}
	return o, nil
}

// runSchedule prints the job, or installs it; a failure is explained and
// errFailedShown.
func runSchedule(ctx context.Context, o *scheduleOptions, stdout, stderr io.Writer) error {
	fail := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "mailmove schedule: "+format+"\n", a...)
		return errFailedShown
	}
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		return fail("cannot find the mailmove binary: %v", err)
	}
	argv := []string{bin, "backup"}
	if home, _ := os.UserHomeDir(); o.cfgPath != "" || o.path != filepath.Join(home, ".config", "mailmove", "config.toml") {
		// cron and systemd do not see this shell's $XDG_CONFIG_HOME
		argv = append(argv, "--config", o.path)
	}
	if o.cron {
		line := fmt.Sprintf("%d %d * * * %s %s", o.minute, o.hour, shellJoin(argv), cronMark)
		if !o.install {
			fmt.Fprintln(stdout, line)
			return nil
		}
		if err := installCron(ctx, line); err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(stderr, "mailmove: added to your crontab: %s\n", line)
		return nil
	}
	service, timer := systemdUnits(argv, o.hour, o.minute)
	if !o.install {
		fmt.Fprintf(stdout, "# ~/.config/systemd/user/%s\n%s\n# ~/.config/systemd/user/%s\n%s", unitService, service, unitTimer, timer)
		return nil
	}
	dir, err := systemdUserDir()
	if err != nil {
		return fail("%v", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail("%v", err)
	}
	for name, text := range map[string]string{unitService: service, unitTimer: timer} {
		if err := writeFileAtomic(filepath.Join(dir, name), []byte(text)); err != nil {
			return fail("%v", err)
		}
	}
	fmt.Fprintf(stderr, "mailmove: wrote %s and %s in %s; now run\n  systemctl --user daemon-reload && systemctl --user enable --now %s\nand, to run it while you are logged out, loginctl enable-linger %s\n",
		unitService, unitTimer, dir, unitTimer, shellQuote(os.Getenv("USER")))
	return nil
}

// systemdUnits returns the service and the timer that run argv daily at
// hour:minute.
func systemdUnits(argv []string, hour, minute int) (service, timer string) {
	var q []string
	for _, a := range argv {
		q = append(q, systemdQuote(a))
	}
	service = fmt.Sprintf(`[Unit]
Description=mailmove backup: export new mail of every job into its archive
Documentation=https://github.com/mailmove/mailmove#backups

[Service]
Type=oneshot
ExecStart=%s
Nice=10
IOSchedulingClass=idle
`, strings.Join(q, " "))
	timer = fmt.Sprintf(`[Unit]
Description=Run mailmove backup every day

[Timer]
OnCalendar=*-*-* %02d:%02d:00
RandomizedDelaySec=15min
Persistent=true

[Install]
WantedBy=timers.target
`, hour, minute)
	return service, timer
}

// systemdQuote quotes a word of an ExecStart= line.
func systemdQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\"'\\$%;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `$$`, `%`, `%%`)
	return `"` + r.Replace(s) + `"`
}

// shellJoin quotes argv for sh, and "%", which cron turns into a newline.
func shellJoin(argv []string) string {
	var q []string
	for _, a := range argv {
		s := a
		if strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./+=:,@") != "" || s == "" {
			s = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
		q = append(q, strings.ReplaceAll(s, "%", `\%`))
	}
	return strings.Join(q, " ")
}

// shellQuote quotes s for sh when it needs it.
func shellQuote(s string) string { return shellJoin([]string{s}) }

// systemdUserDir is where a user's own units go.
func systemdUserDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "systemd", "user"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "systemd", "user"), nil
}

// installCron puts line into the user's crontab, in place of an earlier
// line of schedule --cron, through `crontab -l` and `crontab -`.
func installCron(ctx context.Context, line string) error {
	if _, err := exec.LookPath("crontab"); err != nil {
		return errors.New("crontab is not installed: install cron, or use --systemd")
	}
	var cur, errb bytes.Buffer
	list := exec.CommandContext(ctx, "crontab", "-l")
	list.Stdout, list.Stderr = &cur, &errb
	if err := list.Run(); err != nil && !strings.Contains(strings.ToLower(errb.String()), "no crontab") {
		return fmt.Errorf("crontab -l: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	var out []string
	for _, l := range strings.Split(strings.TrimRight(cur.String(), "\n"), "\n") {
		if l != "" && !strings.HasSuffix(l, cronMark) {
			out = append(out, l)
		}
	}
	out = append(out, line)
	put := exec.CommandContext(ctx, "crontab", "-")
	put.Stdin = strings.NewReader(strings.Join(out, "\n") + "\n")
	var perr bytes.Buffer
	put.Stderr = &perr
	if err := put.Run(); err != nil {
		return fmt.Errorf("crontab -: %v: %s", err, strings.TrimSpace(perr.String()))
	}
	return nil
}

// writeFileAtomic writes a file (0600) through a temporary file and a
// rename.
func writeFileAtomic(p string, b []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// atRE is the shape of --at: H:MM or HH:MM, digits only.
var atRE = regexp.MustCompile(`^[0-9]{1,2}:[0-9]{2}$`)
