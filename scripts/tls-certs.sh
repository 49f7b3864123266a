#!/usr/bin/env bash
# The certificate nginx serves on GATEWAY_TLS_PORT; `make up` runs this first.
#   tls-certs.sh          TLS_CERT_DIR unset (./certs): make a local CA and a server
#                         certificate it signs when there is none, renew the server
#                         certificate when it ends within 30 days, and print the CA's path.
#                         Your own TLS_CERT_DIR: only check that its files are there.
#   tls-certs.sh --renew  a new server key and certificate from the same local CA now
#                         (then `make reload` serves it without dropping a request)
# openssl runs in the nginx image (NGINX_IMAGE), so the host needs none; the host's is used
# when the image has no openssl. Settings come from the environment, then .env, as Compose
# reads them. Nothing here ever goes into an image or into git (certs/ is ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

setting() {  # setting NAME DEFAULT: the environment, else .env, else the default
  local name=$1 value=${!1:-}
  if [[ -z $value && -f .env ]]; then
    value=$(sed -n "s/^$name=//p" .env | tail -n 1)
    value=${value%\"} value=${value#\"} value=${value%\'} value=${value#\'}
  fi
  echo "${value:-$2}"
}

dir=$(setting TLS_CERT_DIR ./certs)
cert_file=$(setting TLS_CERT_FILE server.crt)
key_file=$(setting TLS_KEY_FILE server.key)
image=$(setting NGINX_IMAGE nginx:1.30)
port=$(setting GATEWAY_TLS_PORT 8443)
renew=false
case "${1:-}" in
  --renew) renew=true ;;
  "") ;;
  *) echo "usage: tls-certs.sh [--renew]" >&2; exit 2 ;;
esac

# Your own certificate (files there, but no local CA's key): never touched, only looked
# for; nginx/start.sh checks the rest when nginx starts.
if [[ ! -f $dir/ca.key ]] && [[ -e $dir/$cert_file || -e $dir/$key_file ]]; then
  for file in "$cert_file" "$key_file"; do
    [[ -e $dir/$file ]] || { echo "tls: TLS_CERT_DIR=$dir has no $file" >&2; exit 1; }
  done
  if [[ $renew == true ]]; then
    echo "tls: --renew renews only a certificate of the local CA; $dir holds your own" >&2
    exit 1
  fi
  echo "tls: port $port serves your certificate $dir/$cert_file"
  exit 0
fi

# This machine's names, for the certificate; only what a DNS name may contain.
names=(localhost)
for name in "$(hostname 2>/dev/null || true)" "$(hostname -f 2>/dev/null || true)"; do
  if [[ $name =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ && " ${names[*]} " != *" $name "* ]]; then
    names+=("$name")
  fi
done
alt_names="IP:127.0.0.1,IP:::1$(printf ',DNS:%s' "${names[@]}")"

# The steps, in POSIX sh: they run in the nginx image (as root, to hand the server key to
# nginx's uid 101 and keep the CA's key from it) or, failing that, on the host.
make_certificates() {
  cat <<'SCRIPT'
set -eu
cd "$CERT_DIR"
umask 077
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
if [ ! -f ca.key ] || [ ! -f ca.crt ]; then
  echo "tls: making a local CA: $DISPLAY_DIR/ca.crt"
  new_key ca.key.new
  # Ten years, so a CA you trusted once keeps working; its key never leaves this folder.
  openssl req -x509 -new -key ca.key.new -sha256 -days 3650 \
    -subj "/CN=flask-gateway local CA ($CA_NAME)" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out ca.crt.new
  chmod 644 ca.crt.new
  mv ca.key.new ca.key
  mv ca.crt.new ca.crt
  RENEW=true
fi
if [ "$RENEW" = false ] && [ -f "$CERT_FILE" ] && [ -f "$KEY_FILE" ] &&
  openssl x509 -in "$CERT_FILE" -noout -checkend 2592000 >/dev/null; then
  exit 0
fi
echo "tls: making a server certificate for $ALT_NAMES, signed by $DISPLAY_DIR/ca.crt"
new_key server.key.new
# 365 days, inside the 366 that Mozilla's guideline allows; `make up` renews it 30 days early.
openssl req -x509 -new -CA ca.crt -CAkey ca.key -sha256 -days 365 -subj /CN=localhost \
  -addext "subjectAltName=$ALT_NAMES" -addext basicConstraints=critical,CA:FALSE \
  -addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=serverAuth \
  -key server.key.new -out server.crt.new 2>/dev/null
chmod 644 server.crt.new
if [ "$(id -u)" = 0 ]; then
  chown 101:101 server.key.new
else
  # On the host as a user: nginx (uid 101) must read the key, so it cannot stay 0600.
  chmod 644 server.key.new
fi
# mv, so a reload never reads half a file; the key first, so the pair matches at the end.
mv server.key.new "$KEY_FILE"
mv server.crt.new "$CERT_FILE"
SCRIPT
}

mkdir -p "$dir"
# nginx's uid reads the folder through the bind mount.
chmod 755 "$dir"
absolute_dir=$(cd "$dir" && pwd)
variables=(CERT_DIR=/certs DISPLAY_DIR="$dir" CERT_FILE="$cert_file" KEY_FILE="$key_file"
  RENEW="$renew" ALT_NAMES="$alt_names" CA_NAME="${names[-1]} $(date -u +%F)")
if docker run --rm --network none --entrypoint sh "$image" -c 'command -v openssl' >/dev/null 2>&1; then
  make_certificates | docker run --rm -i --network none --user 0 -v "$absolute_dir:/certs" \
    "${variables[@]/#/--env=}" --entrypoint sh "$image" -s
elif command -v openssl >/dev/null; then
  make_certificates | env "${variables[@]}" CERT_DIR="$absolute_dir" sh -s
else
  echo "tls: openssl is needed, in the nginx image ($image) or on this host" >&2
  exit 1
fi

if [[ -f $dir/ca.crt ]]; then
  echo "tls: https://localhost:$port serves a certificate from the local CA $absolute_dir/ca.crt"
  echo "tls: trust it with: curl --cacert $absolute_dir/ca.crt ..., or add it to your browser or system"
fi
