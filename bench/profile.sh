#!/bin/bash
# Profile an --to eml (and --to mbox) export before and after a change, on the
# bench kit's Dovecot and corpus (see bench/mbsync.sh), in the same run:
#
#   BEFORE=b907237 bash bench/profile.sh     # default BEFORE: b907237, the code issue 7 measured
#
# For each binary: ROUNDS timed exports per format (each checked message by
# message by bench/mmbench before its time is printed), then one run under
# the Go CPU profiler (MAILMOVE_DEBUG_CPUPROFILE) and one under `strace -c -f`.
# Prints wall and CPU seconds, the profile's top functions and the syscall
# table, so the README's figures can be reproduced.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${BENCH_KIT:-../shared/bench}
N=${N:-5000}
ROUNDS=${ROUNDS:-3}
BEFORE=${BEFORE:-b907237}
OUT=/tmp/bench/prof
bash "$KIT/start-dovecot.sh" >/dev/null 2>&1 </dev/null
if [ ! -s /tmp/bench/corpus.json ] || ! grep -q "\"n\": $N\b" /tmp/bench/corpus.json 2>/dev/null; then
  python3 "$KIT/gen-corpus.py" -n "$N" --force >/dev/null
fi
mkdir -p /tmp/bench/bin "$OUT"
go build -o /tmp/bench/bin/mailmove-after ./cmd/mailmove
go build -o /tmp/bench/bin/mmbench ./bench/mmbench
rm -rf "$OUT/src-before"
git worktree add -q --detach "$OUT/src-before" "$BEFORE"
(cd "$OUT/src-before" && go build -o /tmp/bench/bin/mailmove-before ./cmd/mailmove)
git worktree remove --force "$OUT/src-before"
echo pw > /tmp/bench/pw
chmod 600 /tmp/bench/pw
CERT=/tmp/bench/dovecot/ssl/cert.pem
SRC=(-url imaps://src@127.0.0.1:10993 -ca "$CERT" -pwfile /tmp/bench/pw)
MANIFEST=/tmp/bench/manifest.json
/tmp/bench/bin/mmbench fetch "${SRC[@]}" -manifest "$MANIFEST"
export_cmd() { # binary format out
  echo "/tmp/bench/bin/mailmove-$1" export --from imaps://src@127.0.0.1:10993 --from-ca-file "$CERT" \
    --from-password-file /tmp/bench/pw --to "$2" --out "$3" --connections 1
}
timed() { # label verify-archive -- cmd...
  local label=$1 arch=$2; shift 3
  sync
  /usr/bin/time -f "%e %U %S %M" -o /tmp/bench/time "$@" >/dev/null
  read -r secs user sys kb < /tmp/bench/time
  if [ -n "$arch" ]; then
    /tmp/bench/bin/mmbench verify -manifest "$MANIFEST" -archive "$arch" || { echo "$label: VERIFICATION FAILED" >&2; exit 1; }
  fi
  printf '%-40s %7.2f s  cpu %5.2f+%5.2f s %6d MiB\n' "$label" "$secs" "$user" "$sys" "$((kb / 1024))"
}
for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  timed "bare UID FETCH 1:*, 1 connection" "" -- /tmp/bench/bin/mmbench fetch "${SRC[@]}"
  for bin in before after; do
    for f in mbox eml; do
      rm -rf "$OUT/$bin-$f"
      # shellcheck disable=SC2046
      timed "$bin: export --to $f" "$OUT/$bin-$f" -- $(export_cmd "$bin" "$f" "$OUT/$bin-$f")
    done
  done
done
for bin in before after; do
  echo "# $bin: --to eml under the CPU profiler"
  rm -rf "$OUT/$bin-eml"
  # shellcheck disable=SC2046
  MAILMOVE_DEBUG_CPUPROFILE="$OUT/$bin.pprof" $(export_cmd "$bin" eml "$OUT/$bin-eml") >/dev/null
  go tool pprof -top -nodecount=12 "/tmp/bench/bin/mailmove-$bin" "$OUT/$bin.pprof" 2>/dev/null | sed -n '1,20p'
  echo "# $bin: --to eml under strace -c -f"
  rm -rf "$OUT/$bin-eml"
  # shellcheck disable=SC2046
  strace -c -f -o "$OUT/$bin.strace" $(export_cmd "$bin" eml "$OUT/$bin-eml") >/dev/null
  head -n 14 "$OUT/$bin.strace"
done
