#!/bin/sh
# Render prometheus.yml and the rules with the settings, then run Prometheus.
#   start.sh [FLAG...]   render into /tmp/prometheus and run Prometheus with the flags
#   start.sh test        render with the default settings, check the result and run the
#                        rules' unit tests (gateway.rules.test.yml) with promtool
# The same script in the official image (busybox) and the Debian-built one (dash).
set -eu

# The unit tests hold the rules as shipped: the default settings, whatever is set.
if [ "${1:-}" = test ]; then
    unset PROMETHEUS_INTERVAL APP_REPLICAS ALERT_REPLICA_FOR
fi
: "${PROMETHEUS_INTERVAL:=10s}"
: "${APP_REPLICAS:=5}"
: "${ALERT_REPLICA_FOR:=1m}"
here=/etc/prometheus/gateway
rendered=/tmp/prometheus

fail() {
    echo "start.sh: $*" >&2
    exit 2
}

duration() {  # duration NAME: the setting NAME is a Prometheus duration (30s, 1m, 1h...)
    eval "value=\${$1}"
    # shellcheck disable=SC2154 # set by the eval above
    echo "$value" | grep -Eq '^[0-9]+(ms|s|m|h)$' || fail "$1 must be a duration like 10s or 1m, not '$value'"
}

duration PROMETHEUS_INTERVAL
duration ALERT_REPLICA_FOR
case "$APP_REPLICAS" in
    '' | *[!0-9]*) fail "APP_REPLICAS must be a whole number, not '$APP_REPLICAS'" ;;
esac

mkdir -p "$rendered"
for template in "$here"/*.yml; do
    sed -e "s/\${PROMETHEUS_INTERVAL}/$PROMETHEUS_INTERVAL/g" \
        -e "s/\${APP_REPLICAS}/$APP_REPLICAS/g" \
        -e "s/\${ALERT_REPLICA_FOR}/$ALERT_REPLICA_FOR/g" \
        "$template" >"$rendered/${template##*/}"
done

if [ "${1:-}" = test ]; then
    promtool check config "$rendered/prometheus.yml"
    exec promtool test rules "$rendered/gateway.rules.test.yml"
fi
# Explicit paths: Debian's binary has other defaults than the official image.
exec prometheus --config.file="$rendered/prometheus.yml" --storage.tsdb.path=/prometheus \
    --web.console.templates="$here/consoles" --web.console.libraries="$here/consoles" "$@"
