//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const scheduleConfig = "[accounts.a]\nurl = \"imaps://me@example.org\"\npassword_cmd = \"pass show mail\"\n\n[jobs.a]\naccount = \"a\"\nformat = \"mbox\"\nout = \"/tmp/mailmove-never-written\"\n"

// TestScheduleSystemd: the printed units name the absolute binary and the
// configuration, pass systemd-analyze verify (where it is installed), and
// --install writes them to ~/.config/systemd/user.
func TestScheduleSystemd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my config") // a space, to be quoted
	os.MkdirAll(dir, 0o700)
	cfg := filepath.Join(dir, "config.toml")
	os.WriteFile(cfg, []byte(scheduleConfig), 0o600)
	bin := binary(t)
	o, e, code := runCmdEnv(t, nil, "schedule", "--systemd", "--config", cfg, "--at", "04:05")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	if !strings.Contains(o, "ExecStart="+bin+` backup --config "`+cfg+`"`) || !strings.Contains(o, "OnCalendar=*-*-* 04:05:00") || !strings.Contains(o, "Persistent=true") {
		t.Fatalf("units:\n%s", o)
	}
	home := t.TempDir()
	xdg := filepath.Join(home, ".config")
	if _, e, code := runCmdEnv(t, []string{"HOME=" + home, "XDG_CONFIG_HOME=" + xdg}, "schedule", "--systemd", "--install", "--config", cfg, "--at", "04:05"); code != 0 || !strings.Contains(e, "systemctl --user daemon-reload") {
		t.Fatalf("--install: %d %s", code, e)
	}
	unitDir := filepath.Join(xdg, "systemd", "user")
	service := filepath.Join(unitDir, unitService)
	timer := filepath.Join(unitDir, unitTimer)
	for _, p := range []string{service, timer} {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(o, string(b)) {
			t.Fatalf("%s: %v, not what was printed:\n%s", p, err, b)
		}
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the units were not verified")
	}
	verify := func(files ...string) (string, error) {
		cmd := exec.Command(sa, append([]string{"verify", "--user"}, files...)...)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir(), "HOME="+home, "XDG_CONFIG_HOME="+xdg)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(service, timer); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// the check is real: a unit whose binary is missing fails it
	b, _ := os.ReadFile(service)
	bad := filepath.Join(t.TempDir(), unitService)
	os.WriteFile(bad, []byte(strings.Replace(string(b), bin, "/nonexistent/mailmove", 1)), 0o600)
	if out, err := verify(bad); err == nil {
		t.Fatalf("systemd-analyze accepted a unit with a missing binary:\n%s", out)
	}
}

// TestScheduleCron: the printed crontab line, and --install through
// `crontab -l` / `crontab -` (a stand-in crontab here: cron is not
// installed on every test machine) keeps the other lines and replaces its
// own.
func TestScheduleCron(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.toml")
	os.WriteFile(cfg, []byte(scheduleConfig), 0o600)
	bin := binary(t)
	o, e, code := runCmdEnv(t, nil, "schedule", "--cron", "--config", cfg)
	want := "17 3 * * * " + bin + " backup --config " + cfg + " " + cronMark
	if code != 0 || strings.TrimSpace(o) != want {
		t.Fatalf("exit %d %s\ngot  %q\nwant %q", code, e, o, want)
	}
	// the line works as written: sh runs it
	if out, err := exec.Command("sh", "-c", strings.TrimPrefix(strings.TrimSuffix(want, cronMark), "17 3 * * * ")+" --help").CombinedOutput(); err != nil || !strings.Contains(string(out), "Usage: mailmove backup") {
		t.Fatalf("the crontab command does not run: %v %s", err, out)
	}
	fake := t.TempDir()
	tab := filepath.Join(fake, "tab")
	os.WriteFile(tab, []byte("MAILTO=me@example.org\n0 * * * * other-job\n"), 0o600)
	script := "#!/bin/sh\nif [ \"$1\" = -l ]; then cat " + tab + "; else cat > " + tab + ".new && mv " + tab + ".new " + tab + "; fi\n"
	os.WriteFile(filepath.Join(fake, "crontab"), []byte(script), 0o700)
	env := []string{"PATH=" + fake + ":" + os.Getenv("PATH")}
	for i := 0; i < 2; i++ {
		if _, e, code := runCmdEnv(t, env, "schedule", "--cron", "--install", "--config", cfg); code != 0 {
			t.Fatalf("--install: %d %s", code, e)
		}
	}
	b, _ := os.ReadFile(tab)
	if string(b) != "MAILTO=me@example.org\n0 * * * * other-job\n"+want+"\n" {
		t.Fatalf("crontab after two installs:\n%s", b)
	}
	// a broken configuration is not scheduled
	os.WriteFile(cfg, []byte("[jobs.x]\naccount = \"nope\"\n"), 0o600)
	if _, e, code := runCmdEnv(t, nil, "schedule", "--cron", "--config", cfg); code != exitUsage || !strings.Contains(e, cfg+":2:") {
		t.Fatalf("broken config: %d %s", code, e)
	}
}
