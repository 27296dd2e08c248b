#!/bin/bash
# Time mailmove against mbsync on the same Dovecot, same corpus, same run.
#
#   bash bench/mbsync.sh            # N=5000 messages (~380 MB), 3 rounds
#   N=1000 ROUNDS=1 bash bench/mbsync.sh
#
# Uses the shared bench kit (BENCH_KIT, default ../shared/bench): its private
# Dovecot on 127.0.0.1:10993 (IMAPS, self-signed), its corpus generator and
# its mbsync configuration. Needs dovecot-imapd, isync, python3, /usr/bin/time.
# Prints one line per run: tool, mode, wall seconds, user and system CPU
# seconds, peak RSS MiB. A mailmove run's time is printed only after
# bench/mmbench has checked that every message arrived byte for byte, in its
# folder (SHA-256 of the archive's stored bytes, read back as import reads
# them, or of what the target account serves, against a manifest of the
# source taken once with a plain FETCH); a mismatch stops the script.
# mbsync changes the bytes (X-TUID), so its runs are checked by count only.
#   IMPORT=0 skips the import part; MM_FORMATS="mbox eml" and
#   MM_CONNS="1 2 4" pick the export runs.
# Imports are checked by bench/verify instead (below): byte for byte, mbsync's X-TUID left out.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${BENCH_KIT:-../shared/bench}
N=${N:-5000}
ROUNDS=${ROUNDS:-3}
OUT=/tmp/bench/out
bash "$KIT/start-dovecot.sh" >/dev/null 2>&1 </dev/null
if [ ! -s /tmp/bench/corpus.json ] || ! grep -q "\"n\": $N\b" /tmp/bench/corpus.json 2>/dev/null; then
  python3 "$KIT/gen-corpus.py" -n "$N" --force >/dev/null
fi
mkdir -p /tmp/bench/bin "$OUT"
go build -o /tmp/bench/bin/mailmove ./cmd/mailmove
go build -o /tmp/bench/bin/verify ./bench/verify
go build -o /tmp/bench/bin/mmbench ./bench/mmbench
echo pw > /tmp/bench/pw
chmod 600 /tmp/bench/pw
CERT=/tmp/bench/dovecot/ssl/cert.pem
MM=(/tmp/bench/bin/mailmove export --from imaps://src@127.0.0.1:10993 --from-ca-file "$CERT" --from-password-file /tmp/bench/pw)
SRC=(-url imaps://src@127.0.0.1:10993 -ca "$CERT" -pwfile /tmp/bench/pw)
DST=(-url imaps://dst@127.0.0.1:10993 -ca "$CERT" -pwfile /tmp/bench/pw)
MANIFEST=/tmp/bench/manifest.json
/tmp/bench/bin/mmbench fetch "${SRC[@]}" -manifest "$MANIFEST" # the truth, not timed
FORMATS=${MM_FORMATS:-mbox eml}
CONNS=${MM_CONNS:-1 2 4}

# timed label verify-args -- cmd...: runs cmd, checks its result with
# `mmbench verify verify-args` (none: not checked), then prints the time.
timed() {
  local label=$1; shift
  local check=()
  while [ "$1" != "--" ]; do check+=("$1"); shift; done
  shift
  sync
  /usr/bin/time -f "%e %U %S %M" -o /tmp/bench/time "$@" >/dev/null
  read -r secs user sys kb < /tmp/bench/time
  if [ ${#check[@]} -gt 0 ]; then
    /tmp/bench/bin/mmbench verify -manifest "$MANIFEST" "${check[@]}" || { echo "$label: VERIFICATION FAILED" >&2; exit 1; }
  fi
  printf '%-48s %7.2f s  cpu %5.2f+%5.2f s %6d MiB\n' "$label" "$secs" "$user" "$sys" "$((kb / 1024))"
}
count_maildir() { # the number of messages in a Maildir tree equals the source's
  local n
  n=$(find "$1" -path '*/cur/*' -type f -o -path '*/new/*' -type f | wc -l)
  [ "$n" = "$(python3 -c 'import json,sys; print(sum(len(v) for v in json.load(open(sys.argv[1])).values()))' "$MANIFEST")" ] ||
    { echo "$1 holds $n messages: VERIFICATION FAILED" >&2; exit 1; }
}

for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  rm -rf "$OUT/mbsync-pull" "$OUT"/mm-* /tmp/bench/state/mbsync-pull
  mkdir -p "$OUT/mbsync-pull"
  timed "bare UID FETCH 1:* BODY.PEEK[], 1 connection" -- /tmp/bench/bin/mmbench fetch "${SRC[@]}"
  timed "mbsync pull -> Maildir (fsync on)" -- mbsync -q -c "$KIT/peers/mbsyncrc" pull
  count_maildir "$OUT/mbsync-pull"
  timed "mbsync pull again (nothing new)" -- mbsync -q -c "$KIT/peers/mbsyncrc" pull
  for f in $FORMATS; do
    for c in $CONNS; do
      timed "mailmove export --to $f --connections $c" -archive "$OUT/mm-$f-$c" -- "${MM[@]}" --to "$f" --out "$OUT/mm-$f-$c" --connections "$c"
    done
  done
  timed "mailmove export again (nothing new)" -archive "$OUT/mm-mbox-4" -- "${MM[@]}" --to mbox --out "$OUT/mm-mbox-4"
done
[ "${IMPORT:-1}" = 0 ] && exit 0

# timed_verified label verify-flags -- cmd...: time cmd, then check that dst
# holds every message of src before printing the time.
timed_verified() {
  local label=$1 vflags=$2; shift 3
  sync
  local rc=0
  /usr/bin/time -f "%e %M" -o /tmp/bench/time "$@" >/dev/null || rc=$?
  if [ "$rc" != 0 ]; then
    echo "FAILED: $label: exit code $rc; no time is reported" >&2
    exit 1
  fi
  read -r secs kb < <(tail -n 1 /tmp/bench/time)
  if ! /tmp/bench/bin/verify --src imaps://src@127.0.0.1:10993 --dst imaps://dst@127.0.0.1:10993 \
      --ca-file "$CERT" --password-file /tmp/bench/pw $vflags; then
    echo "MISMATCH: $label: the target does not hold every message; no time is reported" >&2
    exit 1
  fi
  printf '%-44s %7.2f s %6d MiB  (verified)\n' "$label" "$secs" "$((kb / 1024))"
}

# Import: the same 5 000 messages into the empty account dst, against mbsync
# pushing its Maildir from the pull above.
clear_dst() {
  rm -rf /tmp/bench/dovecot/home/dst/Maildir /tmp/bench/state/mbsync-push "$OUT/journal"
  mkdir -p /tmp/bench/state/mbsync-push
}
MI=(/tmp/bench/bin/mailmove import --to imaps://dst@127.0.0.1:10993 --to-ca-file "$CERT" --to-password-file /tmp/bench/pw --journal-dir "$OUT/journal")
for round in $(seq "$ROUNDS"); do
  echo "# import round $round"
  clear_dst
  timed_verified "mbsync push Maildir -> dst (fsync on)" "--ignore-header X-TUID" -- mbsync -q -c "$KIT/peers/mbsyncrc" push
  clear_dst
  timed_verified "mailmove import (mbox archive) -> dst" "" -- "${MI[@]}" "$OUT/mm-mbox-4"
  timed_verified "mailmove import again (nothing new)" "" -- "${MI[@]}" "$OUT/mm-mbox-4"
  clear_dst
  timed_verified "mailmove import (mbsync's Maildir) -> dst" "--ignore-header X-TUID" -- "${MI[@]}" "$OUT/mbsync-pull"
done
du -sh "$OUT"/mm-mbox-4 "$OUT"/mm-eml-4 "$OUT"/mbsync-pull | sed 's/^/# /'
