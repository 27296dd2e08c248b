// Command mailmove exports mail from an IMAP account or Proton Mail Bridge
// into mbox or .eml archives, incrementally and exactly, and imports
// archives (its own, mbox, .eml, Maildir, Gmail Takeout) into any IMAP
// account, never twice.
//
// Usage:
//
//	mailmove export --from URL --to mbox|eml --out DIR [flags]
//	mailmove import --to URL [flags] SOURCE
//	mailmove folders --from URL [flags]
//	mailmove migrate --from URL --to URL [flags]
//	mailmove check ARCHIVE
//	mailmove verify --from A --to B [flags]
//	mailmove backup [JOB...]
//	mailmove schedule --systemd|--cron [--install]
//	mailmove login URL --oauth-client-id ID [--oauth-client-secret-file FILE]
//	mailmove version
//
// Exit codes: 0 everything done; 1 the run failed (connection, login, TLS,
// disk, quota); 2 usage error; 3 finished, but some messages could not be
// exported or imported; 4 verify found differences; 5 (backup) an archive
// was held by another mailmove for longer than --lock-wait; 6 a daily transfer
// cap was reached (Gmail's, or --max-bytes-per-day): run again tomorrow.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/mailmove/mailmove/account"
	"github.com/mailmove/mailmove/formats/archive"
)

// version is set with -ldflags "-X main.version=..."; "dev" otherwise.
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailed  = 1
	exitUsage   = 2
	exitPartial = 3
	// exitDiffers: verify found messages missing, extra or different.
	exitDiffers = 4
	// exitLocked: backup gave up on an archive that another mailmove held
	// for longer than --lock-wait.
	exitLocked = 5
)

const usage = `mailmove moves mail out of one provider and into an archive you own.

Usage:
  mailmove export  --from URL --to mbox|eml --out DIR [flags]   export an account
  mailmove folders --from URL [flags]                           list what would be exported
  mailmove import  --to URL [flags] SOURCE                      import an archive, mbox, .eml folder or Maildir
  mailmove migrate --from URL --to URL [flags]                  copy one account into another
  mailmove check   ARCHIVE                                      verify an archive against its index
  mailmove verify  --from A --to B [flags]                      compare two accounts or archives
  mailmove backup  [JOB...]                                     run the backup jobs of the configuration file
  mailmove schedule --systemd|--cron [--install]                run backup every night (systemd timer or crontab)
  mailmove login   URL --oauth-client-id ID                     sign in to Gmail or Microsoft with OAuth2, once
  mailmove version

Accounts:
  imaps://USER@HOST[:993]          implicit TLS
  imap://USER@HOST[:143]           STARTTLS (required, never plaintext)
  imap://USER@HOST:PORT?tls=none   plaintext, loopback only
  bridge://USER[@127.0.0.1:1143]   Proton Mail Bridge
  gmail://USER, outlook://USER     Gmail, Microsoft 365 / Outlook.com with OAuth2 (mailmove login first)
  demo                             the built-in demo mailbox

Run 'mailmove help COMMAND' (or 'mailmove COMMAND --help') for the flags of a command.
Flags may come before or after the other arguments.
Exit codes: 0 done, 1 failed, 2 usage error, 3 some messages could not be exported or imported,
4 verify found differences, 5 (backup) an archive stayed locked by another mailmove,
6 a daily transfer cap was reached (run again tomorrow).
`

func main() {
	if p := os.Getenv("MAILMOVE_DEBUG_CPUPROFILE"); p != "" {
		// For performance work: a CPU profile of the whole run.
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
		}
	}
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	pprof.StopCPUProfile()
	if os.Getenv("MAILMOVE_DEBUG_PEAK_RSS") != "" {
		// For the memory test: the peak resident size of this process.
		if b, err := os.ReadFile("/proc/self/status"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "VmHWM:") {
					fmt.Fprintln(os.Stderr, "mailmove: peak", l)
				}
			}
		}
	}
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "export":
		return exitCode(stderr, cmdExport(ctx, args[1:], stdout, stderr))
	case "folders":
		return exitCode(stderr, cmdFolders(ctx, args[1:], stdout, stderr))
	case "import":
		return exitCode(stderr, cmdImport(ctx, args[1:], stdout, stderr))
	case "check":
		return exitCode(stderr, cmdCheck(ctx, args[1:], stdout, stderr))
	case "migrate":
		return exitCode(stderr, cmdMigrate(ctx, args[1:], stdout, stderr))
	case "verify":
		return exitCode(stderr, cmdVerify(ctx, args[1:], stdout, stderr))
	case "backup":
		return exitCode(stderr, cmdBackup(ctx, args[1:], stdout, stderr))
	case "schedule":
		return exitCode(stderr, cmdSchedule(ctx, args[1:], stdout, stderr))
	case "login":
		return exitCode(stderr, cmdLogin(ctx, args[1:], stdout, stderr))
	case "version", "--version":
		fmt.Fprintln(stdout, "mailmove", version)
		return exitOK
	case "help", "-h", "--help":
		if len(args) > 1 && args[0] == "help" {
			switch args[1] {
			case "export", "folders", "import", "check", "migrate", "verify", "backup", "schedule", "login":
				return run([]string{args[1], "--help"}, stdout, stderr)
			case "version", "help":
			default:
				return unknownCommand(args[1], stderr)
			}
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		return unknownCommand(args[0], stderr)
	}
}

// unknownCommand says so, with the closest command, instead of the whole
// usage.
func unknownCommand(name string, stderr io.Writer) int {
	if s := suggest(name); s != "" {
		fmt.Fprintf(stderr, "mailmove: unknown command %s; did you mean %s?\nRun 'mailmove help %s' for its flags, 'mailmove help' for all commands.\n", name, s, s)
		return exitUsage
	}
	fmt.Fprintf(stderr, "mailmove: unknown command %s\nCommands: export, folders, import, migrate, check, verify, backup, schedule, login, version. Run 'mailmove help' for more.\n", name)
	return exitUsage
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// exitDailyCap: a daily transfer cap was reached (the provider's, such as
// Gmail's [OVERQUOTA], or --max-bytes-per-day); what was transferred is
// safe, and the same command run the next day goes on. (Kept apart from the
// exit codes above, with its own number, so that it merges with the codes
// other commands add.)
const exitDailyCap = 6

// errorExit prints err the way the user needs it and returns the exit code.
func errorExit(stderr io.Writer, err error) int {
	var ue *account.UsageError
	var pe *account.PasswordFileModeError
	var ee *archive.EncryptedError
	var ie *archive.IdentityError
	var se *archive.SealingError
	var me *archive.IdentityFileModeError
	if errors.As(err, &ue) || errors.As(err, &pe) || errors.As(err, &ee) || errors.As(err, &ie) || errors.As(err, &se) || errors.As(err, &me) {
		fmt.Fprintf(stderr, "mailmove: %v\n", err)
		return exitUsage
	}
	var ce *account.CapError
	if errors.As(err, &ce) {
		fmt.Fprintf(stderr, "mailmove: %v\n", err)
		return exitDailyCap
	}
	if ce := account.AsCapError(err, "download or upload", false); ce != nil {
		// a cap met where it was not expected (at login, say)
		fmt.Fprintf(stderr, "mailmove: %v\nmailmove: %v\n", err, ce)
		return exitDailyCap
	}
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(stderr, "mailmove: interrupted; what was written is safe, run the same command again to finish")
		return exitFailed
	}
	fmt.Fprintf(stderr, "mailmove: %v\n", err)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		fmt.Fprintln(stderr, "mailmove: the disk is full. Free some space and run the same command again: what was written is safe, and the run goes on from there")
	}
	return exitFailed
}
