#!/usr/bin/env bash
# Wait until every container of the Compose project is running and healthy. Fail at once,
# printing its last error line, when a container keeps restarting or has stopped.
# Usage: wait-healthy.sh [timeout-seconds]   (0: only report what is not healthy now)
set -euo pipefail
cd "$(dirname "$0")/.."
timeout=${1:-180}
deadline=$((SECONDS + timeout))
declare -A first_restart_count

describe() {  # one line per container: id service-N status restart-count exit-code health
  # (`index`, not .State.Health: that fails for a container without a health check, as
  # nginx's exporter is)
  docker inspect -f '{{.Id}} {{index .Config.Labels "com.docker.compose.service"}}-{{index .Config.Labels "com.docker.compose.container-number"}} {{.State.Status}} {{.RestartCount}} {{.State.ExitCode}} {{with index .State "Health"}}{{.Status}}{{else}}no-healthcheck{{end}}' "$@"
}

last_error_line() {  # the last non-empty line the container wrote (stdout or stderr)
  docker logs --tail 20 "$1" 2>&1 | grep -v '^[[:space:]]*$' | tail -n 1
}

fail() {  # fail ID NAME WHY
  echo "wait-healthy: $2 $3; its last line:" >&2
  echo "  $(last_error_line "$1")" >&2
  exit 1
}

while true; do
  # -a: a container that exited must count, and Compose v2's ps hides it without -a.
  mapfile -t ids < <(scripts/compose ps -a -q)
  waiting=()
  if ((${#ids[@]})); then
    while read -r id name status restarts exit_code health; do
      first_restart_count[$id]=${first_restart_count[$id]:-$restarts}
      case $status in
        exited | dead) fail "$id" "$name" "has stopped (exit code $exit_code)" ;;
      esac
      # Two restarts while we wait is a crash loop, not a slow start.
      if ((restarts - first_restart_count[$id] >= 2)) || { [[ $status == restarting ]] && ((timeout == 0)); }; then
        fail "$id" "$name" "keeps restarting (exit code $exit_code)"
      fi
      if [[ $status != running || ($health != healthy && $health != no-healthcheck) ]]; then
        waiting+=("$id $name $status $health")
      fi
    done < <(describe "${ids[@]}")
  fi
  if ((${#ids[@]})) && ((${#waiting[@]} == 0)); then
    echo "wait-healthy: all ${#ids[@]} containers healthy"
    exit 0
  fi
  if ((SECONDS >= deadline)); then
    echo "wait-healthy: not healthy after ${timeout}s:" >&2
    ((${#waiting[@]})) || echo "  no containers" >&2
    for line in "${waiting[@]}"; do
      read -r id name status health <<<"$line"
      echo "  $name: $status, $health; its last line: $(last_error_line "$id")" >&2
    done
    exit 1
  fi
  sleep 1
done
