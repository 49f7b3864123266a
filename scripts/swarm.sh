#!/usr/bin/env bash
# Run the gateway on Docker Swarm from the same docker-compose.yml (README "Beyond one machine").
#   swarm.sh up     build the app image, deploy (or update) the stack, wait until it converged
#                   and nginx answers /info
#   swarm.sh down   remove the stack and wait until its containers and network are gone
# STACK names the stack (default: gateway). Settings come from the environment, then .env,
# as with docker-compose. With no swarm on this engine, `up` makes a single-node one and
# `down` leaves it again; a swarm that was already there is never left.
set -euo pipefail
cd "$(dirname "$0")/.."

stack=${STACK:-gateway}
python=${PYTHON:-python3}
# Written when `up` made the swarm, so that `down` of the same stack leaves only a swarm it made.
made_swarm_marker=.swarm-made-by-$stack

# docker stack deploy does not read .env: export its settings, the environment winning.
if [[ -f .env ]]; then
  while IFS='=' read -r name value; do
    if [[ $name =~ ^[A-Z][A-Z0-9_]*$ && -z ${!name+set} ]]; then export "$name=$value"; fi
  done <.env
fi
port=${GATEWAY_PORT:-8000}

swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}'; }

up() {
  if [[ $(swarm_state) == inactive ]]; then
    echo "swarm: no swarm on this engine; making a single-node one (swarm.sh down leaves it)"
    # The marker also says whether docker_gwbridge (made by the swarm's first task) was here.
    if docker network inspect docker_gwbridge >/dev/null 2>&1; then
      echo keep-gwbridge >"$made_swarm_marker"
    else
      echo remove-gwbridge >"$made_swarm_marker"
    fi
    docker swarm init --advertise-addr "${SWARM_ADVERTISE_ADDR:-127.0.0.1}" >/dev/null
  fi
  # Stack deploy ignores `build` and no registry is needed on one node: build it here.
  scripts/compose build app
  # The certificate nginx serves on GATEWAY_TLS_PORT, as make up makes it (certs/).
  scripts/tls-certs.sh
  # --detach=false: return once every service has converged, rolling updates included.
  "$python" swarm/compose_for_stack.py docker-compose.yml |
    timeout "${SWARM_WAIT_SECONDS:-300}" docker stack deploy --detach=false --quiet \
      --resolve-image never --prune -c - -c swarm/docker-compose.swarm.yml "$stack"
  wait_until_serving 60
}

wait_until_serving() {  # every service at its replica count, then /info answers through nginx
  local deadline=$((SECONDS + $1)) replicas
  while ((SECONDS < deadline)); do
    replicas=$(docker service ls --filter "label=com.docker.stack.namespace=$stack" --format '{{.Replicas}}')
    if [[ -n $replicas ]] && awk -F'[/ ]' '$1 != $2 {exit 1}' <<<"$replicas" &&
      curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$port/info"; then
      echo "swarm: stack $stack serves on port $port"
      docker stack services "$stack"
      return
    fi
    sleep 2
  done
  echo "swarm: stack $stack not serving after $1 s" >&2
  docker stack ps --no-trunc "$stack" >&2 || true
  exit 1
}

down() {
  docker stack rm "$stack" 2>/dev/null || true
  # stack rm returns at once; the tasks still drain (stop_grace_period) and then go.
  local deadline=$((SECONDS + 120))
  while ((SECONDS < deadline)); do
    if [[ -z $(docker ps -aq --filter "label=com.docker.stack.namespace=$stack") ]] &&
      [[ -z $(docker network ls -q --filter "label=com.docker.stack.namespace=$stack") ]]; then
      break
    fi
    sleep 1
  done
  if [[ -f $made_swarm_marker ]]; then
    docker swarm leave --force >/dev/null
    if [[ $(cat "$made_swarm_marker") == remove-gwbridge ]]; then
      docker network rm docker_gwbridge >/dev/null 2>&1 || true
    fi
    rm -f "$made_swarm_marker"
    echo "swarm: left the single-node swarm that swarm.sh up made"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: swarm.sh up|down" >&2; exit 2 ;;
esac
