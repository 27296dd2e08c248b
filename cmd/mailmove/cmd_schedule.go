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

func cmdSchedule(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("schedule", flag.ContinueOnError)
	fs.SetOutput(stderr)
	systemd := fs.Bool("systemd", false, "a systemd user service and timer")
	cron := fs.Bool("cron", false, "a crontab line")
	install := fs.Bool("install", false, "install them: write the units to ~/.config/systemd/user/, or add the line to your crontab (crontab -)")
	cfgPath := fs.String("config", "", "the configuration `file` the backup reads (default $XDG_CONFIG_HOME/mailmove/config.toml; named in the job unless it is ~/.config/mailmove/config.toml)")
	at := fs.String("at", "03:17", "the time of day to run, `HH:MM` (systemd adds up to 15 minutes at random; a missed run happens at the next boot)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailmove schedule --systemd|--cron [--install] [--config FILE] [--at HH:MM]\n\nPrints (or installs) what runs 'mailmove backup' every day: a systemd user\nservice and timer, or a crontab line.\n\n")
		fs.PrintDefaults()
	}
	pos, code, ok := parseArgs(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 0 || *systemd == *cron {
		fmt.Fprintln(stderr, "mailmove schedule: give one of --systemd and --cron")
		return exitUsage
	}
	var hour, minute int
	if n, err := fmt.Sscanf(*at, "%d:%d", &hour, &minute); err != nil || n != 2 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || len(*at) > 5 {
		fmt.Fprintf(stderr, "mailmove schedule: --at %q: want HH:MM, e.g. 03:17\n", *at)
		return exitUsage
	}
	// The job runs the configuration as it is now: refuse a broken one.
	path := *cfgPath
	if path == "" {
		var err error
		if path, err = config.DefaultPath(); err != nil {
			fmt.Fprintf(stderr, "mailmove schedule: %v\n", err)
			return exitUsage
		}
	} else if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if _, err := config.Load(path); err != nil {
		fmt.Fprintf(stderr, "mailmove schedule: %v\n", err)
		return exitUsage
	}
	bin, err := os.Executable()
	if err == nil {
		bin, err = filepath.EvalSymlinks(bin)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailmove schedule: cannot find the mailmove binary: %v\n", err)
		return exitFailed
	}
	argv := []string{bin, "backup"}
	if home, _ := os.UserHomeDir(); *cfgPath != "" || path != filepath.Join(home, ".config", "mailmove", "config.toml") {
		// cron and systemd do not see this shell's $XDG_CONFIG_HOME
		argv = append(argv, "--config", path)
	}
	if *cron {
		line := fmt.Sprintf("%d %d * * * %s %s", minute, hour, shellJoin(argv), cronMark)
		if !*install {
			fmt.Fprintln(stdout, line)
			return exitOK
		}
		if err := installCron(ctx, line); err != nil {
			fmt.Fprintf(stderr, "mailmove schedule: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stderr, "mailmove: added to your crontab: %s\n", line)
		return exitOK
	}
	service, timer := systemdUnits(argv, hour, minute)
	if !*install {
		fmt.Fprintf(stdout, "# ~/.config/systemd/user/%s\n%s\n# ~/.config/systemd/user/%s\n%s", unitService, service, unitTimer, timer)
		return exitOK
	}
	dir, err := systemdUserDir()
	if err != nil {
		fmt.Fprintf(stderr, "mailmove schedule: %v\n", err)
		return exitFailed
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "mailmove schedule: %v\n", err)
		return exitFailed
	}
	for name, text := range map[string]string{unitService: service, unitTimer: timer} {
		if err := writeFileAtomic(filepath.Join(dir, name), []byte(text)); err != nil {
			fmt.Fprintf(stderr, "mailmove schedule: %v\n", err)
			return exitFailed
		}
	}
	fmt.Fprintf(stderr, "mailmove: wrote %s and %s in %s; now run\n  systemctl --user daemon-reload && systemctl --user enable --now %s\nand, to run it while you are logged out, loginctl enable-linger %s\n",
		unitService, unitTimer, dir, unitTimer, shellQuote(os.Getenv("USER")))
	return exitOK
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
