#!/bin/bash
# Start a private Dovecot for tests: start.sh DIR IMAP_PORT IMAPS_PORT [MAIL_LOCATION]
# (MAIL_LOCATION replaces the configuration's mail_location, e.g.
# maildir:~/Maildir:LAYOUT=fs)
# Writes DIR/{dovecot.conf,users,cert.pem,key.pem}, users src and dst with
# password "pw", and waits until both ports accept connections.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$1 PORT_IMAP=$2 PORT_IMAPS=$3 MAIL_LOCATION=${4:-}
mkdir -p "$DIR/run" "$DIR/state" "$DIR/home"
chmod 755 "$DIR"
chown mail:mail "$DIR/home"
printf 'src:{PLAIN}pw::::::\ndst:{PLAIN}pw::::::\n' > "$DIR/users"
if [ ! -s "$DIR/cert.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
    -keyout "$DIR/key.pem" -out "$DIR/cert.pem" -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
  chmod 600 "$DIR/key.pem"
fi
sed -e "s#@DIR@#$DIR#g" -e "s#@PORT_IMAP@#$PORT_IMAP#g" -e "s#@PORT_IMAPS@#$PORT_IMAPS#g" \
  "$HERE/dovecot.conf.in" > "$DIR/dovecot.conf"
if [ -n "$MAIL_LOCATION" ]; then
  sed -i "s#^mail_location = .*#mail_location = $MAIL_LOCATION#" "$DIR/dovecot.conf"
fi
dovecot -c "$DIR/dovecot.conf" </dev/null >/dev/null 2>&1
for port in "$PORT_IMAP" "$PORT_IMAPS"; do
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
  done
done
