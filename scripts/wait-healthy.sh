#!/usr/bin/env bash
# Wait until every container of the Compose project is running and healthy.
# Usage: wait-healthy.sh [timeout-seconds]   (Compose v1 has no `up --wait`)
set -euo pipefail
timeout=${1:-180}
deadline=$((SECONDS + timeout))
compose=${COMPOSE:-docker-compose}

while true; do
  ids=$($compose ps -q)
  states=$( [[ -z $ids ]] || docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' $ids)
  waiting=$(grep -v ' running healthy$' <<<"$states" || true)
  if [[ -n $ids && -z $waiting ]]; then
    echo "wait-healthy: all $(wc -l <<<"$states") containers healthy"
    exit 0
  fi
  if ((SECONDS >= deadline)); then
    echo "wait-healthy: not healthy after ${timeout}s:" >&2
    echo "${waiting:-no containers}" >&2
    $compose logs --tail=30 >&2 || true
    exit 1
  fi
  sleep 1
done
