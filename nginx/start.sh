#!/bin/sh
# Render nginx.conf.template with the settings from the environment, then run nginx.
#   start.sh           render and run nginx in the foreground (the container's command)
#   start.sh test      render and check the configuration (nginx -t)
#   start.sh reload    render again and reload the running nginx without dropping requests
set -eu

: "${NGINX_ACCESS_LOG:=/dev/stdout}"
: "${NGINX_WORKER_PROCESSES:=1}"
: "${NGINX_RESOLVE_SECONDS:=2}"
: "${NGINX_FAIL_TIMEOUT:=5}"
: "${NGINX_READ_TIMEOUT:=5}"
: "${RATE_LIMIT_PER_SECOND:=1000}"
: "${RATE_LIMIT_BURST:=2000}"
: "${CONNECTIONS_PER_CLIENT:=128}"
: "${MAX_BODY_SIZE:=1m}"
: "${LOG_FORMAT:=json}"
: "${METRICS_PUBLIC:=false}"
case "$LOG_FORMAT" in
    json | text) ;;
    *) echo "start.sh: LOG_FORMAT must be json or text, not '$LOG_FORMAT'" >&2; exit 2 ;;
esac
case "$NGINX_WORKER_PROCESSES" in
    auto | [1-9] | [1-9][0-9]) ;;
    *) echo "start.sh: NGINX_WORKER_PROCESSES must be auto or 1-99, not '$NGINX_WORKER_PROCESSES'" >&2; exit 2 ;;
esac
case "$METRICS_PUBLIC" in
    true | false) ;;
    *) echo "start.sh: METRICS_PUBLIC must be true or false, not '$METRICS_PUBLIC'" >&2; exit 2 ;;
esac
export NGINX_ACCESS_LOG NGINX_WORKER_PROCESSES NGINX_RESOLVE_SECONDS NGINX_FAIL_TIMEOUT \
    NGINX_READ_TIMEOUT RATE_LIMIT_PER_SECOND RATE_LIMIT_BURST CONNECTIONS_PER_CLIENT \
    MAX_BODY_SIZE LOG_FORMAT METRICS_PUBLIC

rendered=/tmp/nginx.conf
# Only our own variables are replaced: nginx's $variables stay as they are.
envsubst '${NGINX_ACCESS_LOG} ${NGINX_WORKER_PROCESSES} ${NGINX_RESOLVE_SECONDS}
    ${NGINX_FAIL_TIMEOUT} ${NGINX_READ_TIMEOUT} ${RATE_LIMIT_PER_SECOND} ${RATE_LIMIT_BURST}
    ${CONNECTIONS_PER_CLIENT} ${MAX_BODY_SIZE} ${LOG_FORMAT} ${METRICS_PUBLIC}' \
    </etc/nginx/gateway/nginx.conf.template >"$rendered"

case "${1:-run}" in
    run) exec nginx -c "$rendered" -g 'daemon off;' ;;
    test) exec nginx -t -c "$rendered" ;;
    reload) exec nginx -c "$rendered" -s reload ;;
    *) echo "usage: start.sh [run|test|reload]" >&2; exit 2 ;;
esac
