#!/bin/sh
# Check the settings, render nginx.conf.template with them, then run nginx.
#   start.sh           check, render and run nginx in the foreground (the container's command)
#   start.sh test      check, render and test the configuration (nginx -t)
#   start.sh reload    check, render and test again, then reload the running nginx without
#                      dropping requests (new certificate files are read here too)
# A bad setting stops it with one line that names the setting, before nginx sees it: nginx's
# own errors ("connection limit must be less 65536") do not say which setting to change.
set -eu

: "${NGINX_ACCESS_LOG:=/dev/stdout}"
: "${NGINX_WORKER_PROCESSES:=1}"
: "${NGINX_UPSTREAM_KEEPALIVE:=64}"
: "${NGINX_RESOLVE_SECONDS:=2}"
: "${NGINX_FAIL_TIMEOUT:=5}"
: "${NGINX_READ_TIMEOUT:=5}"
: "${RATE_LIMIT_PER_SECOND:=0}"
: "${RATE_LIMIT_BURST:=100}"
: "${CONNECTIONS_PER_CLIENT:=128}"
: "${MAX_BODY_SIZE:=1m}"
: "${LOG_FORMAT:=json}"
: "${METRICS_PUBLIC:=false}"
: "${TRUSTED_PROXIES:=}"
: "${GATEWAY_TLS_PORT:=8443}"
: "${TLS_CERT_DIR:=./certs}"
: "${TLS_CERT_FILE:=server.crt}"
: "${TLS_KEY_FILE:=server.key}"
: "${TLS_REDIRECT_HTTP:=false}"
: "${HSTS_MAX_AGE:=0}"
# Where the replicas are and who resolves them: Docker's DNS and the Compose service by
# default; Kubernetes sets the headless Service and `resolv.conf` (k8s/base).
: "${NGINX_UPSTREAM:=app:8000}"
: "${NGINX_RESOLVER:=127.0.0.11}"
tls_dir=/etc/nginx/tls

fail() {
    echo "start.sh: $*" >&2
    exit 2
}

# whole_number NAME MIN MAX: the setting NAME is a whole number from MIN to MAX.
whole_number() {
    eval "value=\${$1}"
    # shellcheck disable=SC2154 # set by the eval above
    case "$value" in
        '' | *[!0-9]*) fail "$1 must be a whole number from $2 to $3, not '$value'" ;;
    esac
    # Compare as text first: a number longer than nine digits would overflow sh's arithmetic.
    if [ "${#value}" -gt 9 ] || [ "$value" -lt "$2" ] || [ "$value" -gt "$3" ]; then
        fail "$1 must be a whole number from $2 to $3, not '$value'"
    fi
}

one_of() {  # one_of NAME CHOICE...: the setting NAME is one of the choices
    name=$1
    shift
    eval "value=\${$name}"
    for choice in "$@"; do
        [ "$value" = "$choice" ] && return 0
    done
    fail "$name must be $(echo "$*" | sed 's/ / or /g'), not '$value'"
}

octet_ok() {  # a decimal 0-255 without a leading zero
    case "$1" in
        [0-9] | [1-9][0-9] | 1[0-9][0-9] | 2[0-4][0-9] | 25[0-5]) return 0 ;;
    esac
    return 1
}

ipv4_ok() {
    case "$1" in
        *[!0-9.]* | *..* | .* | *.) return 1 ;;
    esac
    # shellcheck disable=SC2046 # split on the dots on purpose
    set -- $(echo "$1" | tr . ' ')
    [ "$#" -eq 4 ] || return 1
    for octet in "$@"; do
        octet_ok "$octet" || return 1
    done
}

ipv6_ok() {  # hex groups and colons with at most one '::'; nginx parses the rest
    case "$1" in
        *[!0-9A-Fa-f:]* | *:::* | '') return 1 ;;
        *::*::*) return 1 ;;
        *:*) return 0 ;;
    esac
    return 1
}

# trusted_proxy ENTRY: an IPv4 or IPv6 address, with an optional /prefix in range.
trusted_proxy_ok() {
    address=${1%%/*}
    prefix=
    case "$1" in
        */*/* | */) return 1 ;;
        */*) prefix=${1#*/} ;;
    esac
    if ipv4_ok "$address"; then
        longest=32
    elif ipv6_ok "$address"; then
        longest=128
    else
        return 1
    fi
    [ -z "$prefix" ] && return 0
    case "$prefix" in *[!0-9]* | 0?*) return 1 ;; esac
    [ "${#prefix}" -le 3 ] && [ "$prefix" -le "$longest" ]
}

# A file under the TLS folder: a relative path, no '..', readable by this user (nginx's).
tls_file_ok() {
    eval "value=\${$1}"
    case "$value" in
        '' | /* | *..* | *[!A-Za-z0-9._/@+-]*)
            fail "$1 must be a file name inside TLS_CERT_DIR ($TLS_CERT_DIR), not '$value'" ;;
    esac
    path=$tls_dir/$value
    if [ ! -e "$path" ]; then
        fail "$1: $TLS_CERT_DIR/$value does not exist (or its folder is not readable by uid $(id -u)); run 'make up' or scripts/tls-certs.sh for a local certificate, or set TLS_CERT_DIR to your own"
    fi
    if [ ! -f "$path" ] || [ ! -r "$path" ]; then
        fail "$1: $TLS_CERT_DIR/$value is not a file nginx (uid $(id -u)) can read; give it to group $(id -g) on the host: chgrp $(id -g) FILE; chmod g+r FILE"
    fi
}

check_settings() {
    one_of LOG_FORMAT json text
    one_of METRICS_PUBLIC true false
    one_of TLS_REDIRECT_HTTP true false
    case "$NGINX_WORKER_PROCESSES" in
        auto) ;;
        *) whole_number NGINX_WORKER_PROCESSES 1 99 ;;
    esac
    whole_number NGINX_UPSTREAM_KEEPALIVE 1 65535
    whole_number NGINX_RESOLVE_SECONDS 1 3600
    whole_number NGINX_FAIL_TIMEOUT 1 3600
    whole_number NGINX_READ_TIMEOUT 1 3600
    whole_number RATE_LIMIT_PER_SECOND 0 1000000
    # nginx takes no burst of 0 ("invalid burst value").
    whole_number RATE_LIMIT_BURST 1 1000000
    # nginx refuses 65536 and more ("connection limit must be less 65536").
    whole_number CONNECTIONS_PER_CLIENT 1 65535
    whole_number GATEWAY_TLS_PORT 1 65535
    whole_number HSTS_MAX_AGE 0 999999999
    case "$MAX_BODY_SIZE" in
        '' | *[!0-9kKmMgG]* | [!0-9]* | *[kKmMgG]?*)
            fail "MAX_BODY_SIZE must be a size such as 512k, 1m or 0 (no limit), not '$MAX_BODY_SIZE'" ;;
    esac
    # Commas or spaces between entries; each an address or CIDR, never a host name (nginx
    # would resolve a name once, at start, and trust whatever it pointed to then).
    for entry in $(echo "$TRUSTED_PROXIES" | tr ',' ' '); do
        trusted_proxy_ok "$entry" ||
            fail "TRUSTED_PROXIES: '$entry' is not an IPv4 or IPv6 address or CIDR (such as 10.0.0.0/8 or 2001:db8::/32)"
    done
    tls_file_ok TLS_CERT_FILE
    tls_file_ok TLS_KEY_FILE
    check_certificate
    check_upstream
}

# NGINX_UPSTREAM is HOST:PORT, a DNS name nginx re-resolves (a name, so `resolve` applies).
check_upstream() {
    host=${NGINX_UPSTREAM%:*}
    port=${NGINX_UPSTREAM##*:}
    case "$host" in '' | -* | *[!A-Za-z0-9.-]*) port=0 ;; esac
    case "$port" in '' | *[!0-9]* | ??????*) port=0 ;; esac
    if [ "$host" = "$NGINX_UPSTREAM" ] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
        fail "NGINX_UPSTREAM must be a DNS name and port such as app:8000, not '$NGINX_UPSTREAM'"
    fi
    case "$NGINX_RESOLVER" in
        resolv.conf) ;;
        *) ipv4_ok "$NGINX_RESOLVER" || ipv6_ok "$NGINX_RESOLVER" ||
            fail "NGINX_RESOLVER must be an IP address or 'resolv.conf', not '$NGINX_RESOLVER'" ;;
    esac
}

# The DNS server nginx asks: resolv.conf means the container's own first nameserver (on
# Kubernetes the cluster DNS, whatever its address); nginx wants an IPv6 one in brackets.
resolver_address() {
    address=$NGINX_RESOLVER
    if [ "$address" = resolv.conf ]; then
        address=$(sed -n 's/^nameserver[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/resolv.conf | head -n 1)
        [ -n "$address" ] || fail "NGINX_RESOLVER=resolv.conf: /etc/resolv.conf names no nameserver"
    fi
    case "$address" in
        *:*) echo "[$address]" ;;
        *) echo "$address" ;;
    esac
}

# With openssl in the image (the Debian-built one has it), say plainly what nginx would
# report as an OpenSSL error stack: not a certificate, not a key, or a pair that differs.
check_certificate() {
    command -v openssl >/dev/null || return 0
    cert=$tls_dir/$TLS_CERT_FILE
    key=$tls_dir/$TLS_KEY_FILE
    cert_key=$(openssl x509 -in "$cert" -noout -pubkey 2>/dev/null) ||
        fail "TLS_CERT_FILE: $TLS_CERT_DIR/$TLS_CERT_FILE is not a PEM certificate"
    key_key=$(openssl pkey -in "$key" -pubout 2>/dev/null) ||
        fail "TLS_KEY_FILE: $TLS_CERT_DIR/$TLS_KEY_FILE is not an unencrypted PEM private key"
    [ "$cert_key" = "$key_key" ] ||
        fail "TLS_KEY_FILE: $TLS_CERT_DIR/$TLS_KEY_FILE is not the key of $TLS_CERT_DIR/$TLS_CERT_FILE"
    if ! openssl x509 -in "$cert" -noout -checkend 0 >/dev/null; then
        echo "start.sh: warning: the certificate $TLS_CERT_DIR/$TLS_CERT_FILE has expired ($(openssl x509 -in "$cert" -noout -enddate)); clients will refuse it" >&2
    fi
}

# Files nginx includes, written from TRUSTED_PROXIES; /tmp is the only writable place.
write_trusted_proxies() {
    : >/tmp/nginx-trusted-proxies.conf.new
    : >/tmp/nginx-trusted-proxies.geo.new
    for entry in $(echo "$TRUSTED_PROXIES" | tr ',' ' '); do
        echo "set_real_ip_from $entry;" >>/tmp/nginx-trusted-proxies.conf.new
        echo "$entry 1;" >>/tmp/nginx-trusted-proxies.geo.new
    done
    mv /tmp/nginx-trusted-proxies.conf.new /tmp/nginx-trusted-proxies.conf
    mv /tmp/nginx-trusted-proxies.geo.new /tmp/nginx-trusted-proxies.geo
}

check_settings

# Values the template needs in another form than the setting's.
RATE_LIMIT_ON=off
RATE_LIMIT_ZONE_RATE=1
if [ "$RATE_LIMIT_PER_SECOND" -gt 0 ]; then
    RATE_LIMIT_ON=on
    RATE_LIMIT_ZONE_RATE=$RATE_LIMIT_PER_SECOND
fi
HSTS_HEADER=
[ "$HSTS_MAX_AGE" -gt 0 ] && HSTS_HEADER="max-age=$HSTS_MAX_AGE"
TLS_REDIRECT_PORT=":$GATEWAY_TLS_PORT"
[ "$GATEWAY_TLS_PORT" = 443 ] && TLS_REDIRECT_PORT=
NGINX_RESOLVER_ADDRESS=$(resolver_address)

export NGINX_ACCESS_LOG NGINX_WORKER_PROCESSES NGINX_UPSTREAM_KEEPALIVE NGINX_RESOLVE_SECONDS NGINX_FAIL_TIMEOUT \
    NGINX_READ_TIMEOUT RATE_LIMIT_PER_SECOND RATE_LIMIT_BURST CONNECTIONS_PER_CLIENT \
    MAX_BODY_SIZE LOG_FORMAT METRICS_PUBLIC TLS_CERT_FILE TLS_KEY_FILE TLS_REDIRECT_HTTP \
    RATE_LIMIT_ON RATE_LIMIT_ZONE_RATE HSTS_HEADER TLS_REDIRECT_PORT NGINX_UPSTREAM \
    NGINX_RESOLVER_ADDRESS

write_trusted_proxies
rendered=/tmp/nginx.conf
# Only our own variables are replaced: nginx's $variables stay as they are.
# shellcheck disable=SC2016 # the list is for envsubst, not for the shell to expand
envsubst '${NGINX_ACCESS_LOG} ${NGINX_WORKER_PROCESSES} ${NGINX_UPSTREAM_KEEPALIVE} ${NGINX_RESOLVE_SECONDS}
    ${NGINX_FAIL_TIMEOUT} ${NGINX_READ_TIMEOUT} ${RATE_LIMIT_PER_SECOND} ${RATE_LIMIT_BURST}
    ${CONNECTIONS_PER_CLIENT} ${MAX_BODY_SIZE} ${LOG_FORMAT} ${METRICS_PUBLIC}
    ${TLS_CERT_FILE} ${TLS_KEY_FILE} ${TLS_REDIRECT_HTTP} ${RATE_LIMIT_ON}
    ${RATE_LIMIT_ZONE_RATE} ${HSTS_HEADER} ${TLS_REDIRECT_PORT} ${NGINX_UPSTREAM}
    ${NGINX_RESOLVER_ADDRESS}' \
    </etc/nginx/gateway/nginx.conf.template >"$rendered"

case "${1:-run}" in
    run) exec nginx -c "$rendered" -g 'daemon off;' ;;
    test) exec nginx -t -c "$rendered" ;;
    # nginx -s reload only sends a signal: a config the master then refuses would leave the
    # old one running with the error in its log, and `make reload` would report success.
    reload) nginx -t -q -c "$rendered" && exec nginx -c "$rendered" -s reload ;;
    *) echo "usage: start.sh [run|test|reload]" >&2; exit 2 ;;
esac
