#!/usr/bin/env bash
# make up (and make dev): build, start, and return once every container is healthy.
# When a container cannot start it fails within seconds and prints that container's last
# error line, instead of waiting out a restart loop; nginx's settings are checked first.
# Usage: up.sh   (COMPOSE_FILE=a.yml:b.yml adds files, as Compose itself reads it)
set -euo pipefail
cd "$(dirname "$0")/.."
timeout=${UP_TIMEOUT:-300}

echo "up: using $(scripts/compose --which)"
scripts/tls-certs.sh
# nginx's settings and certificate, checked in a throwaway nginx container with the stack's
# own environment and mounts before anything starts: a bad value fails here in seconds,
# with start.sh's one line naming the setting, not in a restart loop after the replicas.
if ! checked=$(scripts/compose run --rm --no-deps -T --entrypoint /bin/sh nginx \
  /etc/nginx/gateway/start.sh test 2>&1); then
  echo "up: nginx cannot start with these settings:" >&2
  grep -v -E -e 'test failed$' -e '^ *(Creating|Container|Network) ' -e '^[0-9]+$' <<<"$checked" |
    sed 's/^/  /' >&2
  # `run` made the project's network; remove it unless a stack of this project runs.
  [[ -n $(scripts/compose ps -a -q) ]] || scripts/compose down --remove-orphans >/dev/null 2>&1
  exit 1
fi
scripts/compose build
if scripts/compose --is-v2; then
  # v2 waits itself, and gives up as soon as a container exits or turns unhealthy.
  if ! scripts/compose up -d --remove-orphans --wait --wait-timeout "$timeout"; then
    scripts/wait-healthy.sh 0 || true
    exit 1
  fi
  echo "up: every container is healthy"
else
  # v1 has no --wait; wait-healthy.sh does the same, restart loops included.
  if ! scripts/compose up -d --remove-orphans; then
    scripts/wait-healthy.sh 0 || true
    exit 1
  fi
  scripts/wait-healthy.sh "$timeout"
fi
