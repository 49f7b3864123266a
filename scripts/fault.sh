#!/usr/bin/env bash
# Switch app replicas into a fault, heal them, or show their state, through the Docker
# engine: the command runs inside the replica (docker exec), where gateway_faults.py
# writes the switch. No HTTP route can do this (docs/faults.md).
# Usage: fault.sh REPLICA set KIND [--ms N] [--for DURATION]    (make fault)
#        fault.sh REPLICA heal                                  (make heal)
#        fault.sh REPLICA show                                  (make faults)
# REPLICA: the Compose number (1, 2, ...), the hostname /info reports (the container id's
# first 12 characters), or `all`. KIND: unavailable, error, slow, hang, unready, crash.
set -euo pipefail
cd "$(dirname "$0")/.."

if (($# < 2)); then
  sed -n '2,9s/^# \{0,1\}//p' "$0" >&2
  exit 2
fi
wanted=$1
shift

# One line per app replica of this Compose project: number, hostname, container id. The
# project's containers come from Compose itself and the number from its label, never
# from a container name (v1 and v2 name them differently).
replicas() {
  local ids
  mapfile -t ids < <(scripts/compose ps -q app)
  ((${#ids[@]})) || return 0
  docker inspect -f '{{index .Config.Labels "com.docker.compose.container-number"}} {{.Config.Hostname}} {{.Id}}' "${ids[@]}" |
    sort -n
}

# A short number is a Compose number, never the start of an id (ids are hex: "3" would
# match any id that starts with 3); a name is a hostname, or an id of 12 characters or more.
matches() {  # matches NUMBER HOSTNAME ID
  if [[ $wanted == all ]]; then return 0; fi
  if [[ $wanted =~ ^[0-9]+$ && ${#wanted} -lt 12 ]]; then [[ $wanted == "$1" ]]; return; fi
  [[ $wanted == "$2" ]] || { ((${#wanted} >= 12)) && [[ $3 == "$wanted"* ]]; }
}

chosen=()
while read -r number hostname id; do
  if matches "$number" "$hostname" "$id"; then
    chosen+=("$number $hostname $id")
  fi
done < <(replicas)
if ((${#chosen[@]} == 0)); then
  echo "fault: no running app replica matches '$wanted'; these run:" >&2
  replicas | awk '{printf "  %s  %s\n", $1, $2}' >&2
  exit 1
fi
if [[ $wanted == all && ${1:-} == set ]]; then
  # A deployment-wide fault is GATEWAY_RANDOM_ERROR_RATE / _DELAY_MS; one switch per replica.
  echo "fault: name one replica to break (REPLICA=1, or a hostname); 'all' is for heal and show" >&2
  exit 2
fi

status=0
for replica in "${chosen[@]}"; do
  read -r number hostname id <<<"$replica"
  if [[ ${1:-} == set && ${2:-} == crash ]]; then
    restarts=$(docker inspect -f '{{.RestartCount}}' "$id")
    echo "app $number ($hostname): crash"
    # Docker ends the exec'd command with the replica: its exit status says nothing.
    docker exec "$id" python3 gateway_faults.py "$@" >/dev/null 2>&1 || true
    for _ in $(seq 60); do
      read -r state now <<<"$(docker inspect -f '{{.State.Status}} {{.RestartCount}}' "$id")"
      if ((now > restarts)) || [[ $state != running ]]; then
        echo "app $number ($hostname): exited; Docker's restart policy starts it again (restarts: $restarts -> $now)"
        continue 2
      fi
      sleep 0.5
    done
    echo "app $number ($hostname): still running after 30 s" >&2
    status=1
    continue
  fi
  if answer=$(docker exec "$id" python3 gateway_faults.py "$@" 2>&1); then
    echo "app $number ($hostname): $answer"
  else
    echo "app $number ($hostname): $answer" >&2
    status=1
  fi
done
exit $status
