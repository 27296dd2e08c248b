#!/bin/bash
# Time an encrypted (and a compressed) export against a plain one, on the
# shared bench kit's Dovecot and corpus, in the same run.
#
#   bash bench/encrypt.sh            # N=5000 messages (~380 MB), 3 rounds
#   N=1000 ROUNDS=1 bash bench/encrypt.sh
#
# Every run is checked before its time is printed: bench/mmbench reads the
# archive back (decrypting with the test identity) and compares every
# message, byte for byte and in its folder, with a manifest of the source;
# a mismatch stops the script. Prints, per run: mode, wall seconds, CPU,
# peak RSS, the archive's size. MM_COMPRESS=0 leaves out the compressed
# runs; MM_FORMATS="mbox eml" picks the formats. Needs dovecot-imapd,
# python3, /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${BENCH_KIT:-../shared/bench}
N=${N:-5000}
ROUNDS=${ROUNDS:-3}
FORMATS=${MM_FORMATS:-mbox eml}
W=$(mktemp -d /tmp/mm-encrypt-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
bash "$KIT/start-dovecot.sh" >/dev/null 2>&1 </dev/null
if [ ! -s /tmp/bench/corpus.json ] || ! grep -q "\"n\": $N\b" /tmp/bench/corpus.json 2>/dev/null; then
  python3 "$KIT/gen-corpus.py" -n "$N" --force >/dev/null
fi
go build -o "$W/mailmove" ./cmd/mailmove
go build -o "$W/mmbench" ./bench/mmbench
go run ./bench/encrypt-keygen "$W/key.txt" > "$W/recipient"
echo pw > "$W/pw"
chmod 600 "$W/pw"
CERT=/tmp/bench/dovecot/ssl/cert.pem
SRC=(-url imaps://src@127.0.0.1:10993 -ca "$CERT" -pwfile "$W/pw")
MM=("$W/mailmove" export --from imaps://src@127.0.0.1:10993 --from-ca-file "$CERT" --from-password-file "$W/pw")
"$W/mmbench" fetch "${SRC[@]}" -manifest "$W/manifest.json" # the truth, not timed
RCPT=$(cat "$W/recipient")

run() { # label args...
  local label=$1; shift
  rm -rf "$W/out"
  sync
  /usr/bin/time -f "%e %U %S %M" -o "$W/time" "${MM[@]}" --out "$W/out" "$@" >/dev/null
  read -r secs user sys kb < "$W/time"
  "$W/mmbench" verify -manifest "$W/manifest.json" -archive "$W/out" -identity "$W/key.txt" ||
    { echo "$label: VERIFICATION FAILED" >&2; exit 1; }
  printf '%-44s %7.2f s  cpu %5.2f+%5.2f s %5d MiB  %5d MB on disk\n' "$label" "$secs" "$user" "$sys" "$((kb / 1024))" "$(du -sm "$W/out" | cut -f1)"
}

for round in $(seq "$ROUNDS"); do
  echo "# round $round"
  for f in $FORMATS; do
    run "export --to $f (plain)" --to "$f"
    run "export --to $f --encrypt-to" --to "$f" --encrypt-to "$RCPT"
    if [ "${MM_COMPRESS:-1}" = 1 ]; then
      run "export --to $f --encrypt-to --compress zstd" --to "$f" --encrypt-to "$RCPT" --compress zstd
      run "export --to $f --compress zstd" --to "$f" --compress zstd
    fi
  done
done
