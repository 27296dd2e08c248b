#!/bin/bash
# Time mailmove migrate against imapsync on the same Dovecot, same corpus,
# same run: user src -> user dst of the shared bench kit (IMAPS on
# 127.0.0.1:10993, self-signed).
#
#   bash bench/migrate.sh                 # N=5000 messages (~380 MB), 3 rounds
#   N=1000 ROUNDS=1 bash bench/migrate.sh
#   IMAPSYNC=/path/to/imapsync bash bench/migrate.sh
#
# imapsync is not packaged in Debian: take the script from its repository
# (github.com/imapsync/imapsync, file `imapsync`) and install the Perl
# modules it needs from Debian (libmail-imapclient-perl libio-tee-perl
# libencode-imaputf7-perl libunicode-string-perl libfile-copy-recursive-perl
# libsys-meminfo-perl libregexp-common-perl libreadonly-perl
# libterm-readkey-perl libdigest-hmac-perl libio-socket-inet6-perl
# libdata-uniqid-perl libfile-tail-perl libproc-processtable-perl
# libjson-webtoken-perl libcrypt-openssl-rsa-perl libhtml-parser-perl
# libio-socket-ssl-perl libauthen-ntlm-perl libmodule-scandeps-perl
# libdist-checkconflicts-perl libjson-perl libwww-perl). Without it
# (IMAPSYNC unset and no imapsync on the PATH) its rows are skipped.
#
# Every timed run that copies is verified before its time is printed: the
# target must hold exactly the source's messages, in the same folders,
# byte for byte (mmbench verify: SHA-256 of what dst serves against a
# manifest of src taken once), and bench/verify must agree; a mismatch
# stops the script. Prints: label, wall seconds, user+system CPU seconds,
# peak RSS MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${BENCH_KIT:-../shared/bench}
[ -d "$KIT" ] || KIT=../../shared/bench # from a worktree under /work/wt
N=${N:-5000}
ROUNDS=${ROUNDS:-3}
OUT=/tmp/bench/out-migrate
IMAPSYNC=${IMAPSYNC:-$(command -v imapsync || true)}
bash "$KIT/start-dovecot.sh" >/dev/null 2>&1 </dev/null
if [ ! -s /tmp/bench/corpus.json ] || ! grep -q "\"n\": $N\b" /tmp/bench/corpus.json 2>/dev/null; then
  python3 "$KIT/gen-corpus.py" -n "$N" --force >/dev/null
fi
mkdir -p /tmp/bench/bin "$OUT"
go build -o /tmp/bench/bin/mailmove-migrate ./cmd/mailmove
go build -o /tmp/bench/bin/verify ./bench/verify
go build -o /tmp/bench/bin/mmbench ./bench/mmbench
echo pw > /tmp/bench/pw
chmod 600 /tmp/bench/pw
CERT=/tmp/bench/dovecot/ssl/cert.pem
MM=(/tmp/bench/bin/mailmove-migrate)
FROM=(--from imaps://src@127.0.0.1:10993 --from-ca-file "$CERT" --from-password-file /tmp/bench/pw)
TO=(--to imaps://dst@127.0.0.1:10993 --to-ca-file "$CERT" --to-password-file /tmp/bench/pw)
MANIFEST=$OUT/manifest.json
/tmp/bench/bin/mmbench fetch -url imaps://src@127.0.0.1:10993 -ca "$CERT" -pwfile /tmp/bench/pw -manifest "$MANIFEST"

# timed label check -- cmd...: runs cmd; with check=dst, verifies dst
# against the source before printing the time; check=archive DIR verifies an
# archive; check=- prints the time unverified (a run that copies nothing).
timed() {
  local label=$1 check=$2; shift 2
  local dir=""
  if [ "$check" = archive ]; then dir=$1; shift; fi
  shift # --
  sync
  local rc=0
  /usr/bin/time -f "%e %U %S %M" -o /tmp/bench/time-migrate "$@" >/dev/null 2>"$OUT/stderr" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "FAILED: $label: exit code $rc; no time is reported" >&2
    cat "$OUT/stderr" >&2
    exit 1
  fi
  read -r secs user sys kb < <(tail -n 1 /tmp/bench/time-migrate)
  case $check in
  dst)
    /tmp/bench/bin/mmbench verify -manifest "$MANIFEST" -url imaps://dst@127.0.0.1:10993 -ca "$CERT" -pwfile /tmp/bench/pw ||
      { echo "MISMATCH: $label: dst is not the source byte for byte; no time is reported" >&2; exit 1; }
    /tmp/bench/bin/verify --src imaps://src@127.0.0.1:10993 --dst imaps://dst@127.0.0.1:10993 --ca-file "$CERT" --password-file /tmp/bench/pw >/dev/null ||
      { echo "MISMATCH: $label (bench/verify); no time is reported" >&2; exit 1; }
    ;;
  archive)
    /tmp/bench/bin/mmbench verify -manifest "$MANIFEST" -archive "$dir" ||
      { echo "MISMATCH: $label: the archive; no time is reported" >&2; exit 1; }
    ;;
  esac
  printf '%-52s %7.2f s  cpu %5.2f+%5.2f s %6d MiB\n' "$label" "$secs" "$user" "$sys" "$((kb / 1024))"
}
clear_dst() {
  rm -rf /tmp/bench/dovecot/home/dst/Maildir "$OUT/state" "$OUT/archive"
}

for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  clear_dst
  timed "mailmove migrate src -> dst" dst -- "${MM[@]}" migrate "${FROM[@]}" "${TO[@]}" --journal-dir "$OUT/state"
  timed "mailmove migrate again (nothing new)" - -- "${MM[@]}" migrate "${FROM[@]}" "${TO[@]}" --journal-dir "$OUT/state"
  # the two halves alone, for the ratio to the slower of them
  timed "mailmove export --to mbox (alone)" archive "$OUT/archive" -- "${MM[@]}" export "${FROM[@]}" --to mbox --out "$OUT/archive"
  clear_dst
  "${MM[@]}" export "${FROM[@]}" --to mbox --out "$OUT/archive" >/dev/null
  timed "mailmove import of that archive (alone)" dst -- "${MM[@]}" import "${TO[@]}" --journal-dir "$OUT/state" "$OUT/archive"
  if [ -n "$IMAPSYNC" ]; then
    clear_dst
    IS=(perl "$IMAPSYNC" --host1 127.0.0.1 --port1 10993 --ssl1 --user1 src --passfile1 /tmp/bench/pw
      --host2 127.0.0.1 --port2 10993 --ssl2 --user2 dst --passfile2 /tmp/bench/pw
      --syncduplicates --nolog --noreleasecheck --nocheckmessageexists)
    timed "imapsync src -> dst" dst -- "${IS[@]}"
    timed "imapsync again (nothing new)" - -- "${IS[@]}"
  fi
done
