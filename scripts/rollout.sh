#!/usr/bin/env bash
# Replace every app replica with a new one from the current image, one at a time, with
# no request lost. Compose has no rolling update (outside Swarm), so for each old replica:
#   1. start one replica more (`up --no-deps --no-recreate --scale app=N+1`),
#   2. wait until Docker says it is healthy and nginx has sent it a request,
#   3. stop the old one gracefully (SIGTERM: /readyz 503, drain, exit) and remove it.
# Containers are found through Compose (`ps -q`), never by name: Compose v1 and v2 alike
# (scripts/compose chooses which).
# Usage: rollout.sh [timeout-seconds-per-replica]   (make rollout builds the image first)
set -euo pipefail
cd "$(dirname "$0")/.."
compose=scripts/compose
timeout=${1:-180}

running_replicas() {  # full ids of the app containers that run now
  local id
  for id in $($compose ps -q app); do
    if [[ $(docker inspect -f '{{.State.Running}}' "$id") == true ]]; then
      docker inspect -f '{{.Id}}' "$id"
    fi
  done | sort
}

wait_until() {  # wait_until DESCRIPTION COMMAND...: retry COMMAND each second until it succeeds
  local what=$1 deadline=$((SECONDS + timeout))
  shift
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "rollout: $what: not done after ${timeout}s" >&2
      exit 1
    fi
    sleep 1
  done
}

is_healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$1") == healthy ]]; }

serves_through_nginx() {  # one round of requests through nginx reaches the container $1
  local hostname=${1:0:12}
  for _ in $(seq $((replicas * 2))); do
    if curl -fsS -o /dev/null -D - -H 'Connection: close' "$gateway/info" |
      grep -qi "^X-Served-By: $hostname"; then
      return 0
    fi
  done
  return 1
}

gateway="http://127.0.0.1:$($compose port nginx 8080 | sed 's/.*://')"
old=$(running_replicas)
replicas=$(wc -w <<<"$old")
if ((replicas == 0)); then
  echo "rollout: no running app replicas; start the stack first (make up)" >&2
  exit 1
fi
echo "rollout: replacing $replicas replicas, one at a time, through $gateway"

for old_id in $old; do
  before=$(running_replicas)
  $compose up -d --no-deps --no-recreate --scale app=$((replicas + 1)) app
  new_id=$(comm -13 <(echo "$before") <(running_replicas) | head -n 1)
  if [[ -z $new_id ]]; then
    echo "rollout: Compose started no new replica" >&2
    exit 1
  fi
  wait_until "${new_id:0:12} healthy" is_healthy "$new_id"
  wait_until "${new_id:0:12} in nginx's rotation" serves_through_nginx "$new_id"
  # No --time: Docker waits the container's stop_grace_period before it SIGKILLs.
  docker stop "$old_id" >/dev/null
  docker rm "$old_id" >/dev/null
  echo "rollout: ${old_id:0:12} -> ${new_id:0:12}"
done
echo "rollout: done, $replicas new replicas"
