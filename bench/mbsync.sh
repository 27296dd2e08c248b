#!/bin/bash
# Time mailmove against mbsync on the same Dovecot, same corpus, same run.
#
#   bash bench/mbsync.sh            # N=5000 messages (~380 MB), 3 rounds
#   N=1000 ROUNDS=1 bash bench/mbsync.sh
#
# Uses the shared bench kit (BENCH_KIT, default ../shared/bench): its private
# Dovecot on 127.0.0.1:10993 (IMAPS, self-signed), its corpus generator and
# its mbsync configuration. Needs dovecot-imapd, isync, python3, /usr/bin/time.
# Prints one line per run: tool, mode, wall seconds, peak RSS MiB, messages.
# Every import is verified before its time is printed: the target must hold
# every message of the source account, per folder, byte for byte (SHA-256
# after CRLF normalisation; mbsync's X-TUID header left out where the
# messages went through mbsync's Maildir). A mismatch stops the bench with
# "MISMATCH" and exit 1: a time of an import that lost mail is never shown.
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
echo pw > /tmp/bench/pw
chmod 600 /tmp/bench/pw
CERT=/tmp/bench/dovecot/ssl/cert.pem
MM=(/tmp/bench/bin/mailmove export --from imaps://src@127.0.0.1:10993 --from-ca-file "$CERT" --from-password-file /tmp/bench/pw)

timed() { # label cmd...
  local label=$1; shift
  sync
  /usr/bin/time -f "%e %M" -o /tmp/bench/time "$@" >/dev/null
  read -r secs kb < /tmp/bench/time
  printf '%-44s %7.2f s %6d MiB\n' "$label" "$secs" "$((kb / 1024))"
}

for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  rm -rf "$OUT/mbsync-pull" "$OUT"/mm-* /tmp/bench/state/mbsync-pull
  mkdir -p "$OUT/mbsync-pull"
  timed "mbsync pull -> Maildir (fsync on)" mbsync -q -c "$KIT/peers/mbsyncrc" pull
  timed "mbsync pull again (nothing new)" mbsync -q -c "$KIT/peers/mbsyncrc" pull
  for c in 1 2 4; do
    timed "mailmove export --to mbox --connections $c" "${MM[@]}" --to mbox --out "$OUT/mm-mbox-$c" --connections $c
  done
  timed "mailmove export --to eml --connections 1" "${MM[@]}" --to eml --out "$OUT/mm-eml-1" --connections 1
  timed "mailmove export --to eml --connections 4" "${MM[@]}" --to eml --out "$OUT/mm-eml-4" --connections 4
  timed "mailmove export again (nothing new)" "${MM[@]}" --to mbox --out "$OUT/mm-mbox-4"
done

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
