#!/usr/bin/env bash
# make lint's configuration checks: the compose file under every Compose version here
# (v2 and v1 1.29 must both accept it), the Swarm stack built from it, and nginx -t on
# the rendered nginx config in the nginx image the stack runs.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}

checked=0
for candidate in "docker compose" .venv/compose-v2/docker-compose docker-compose; do
  # shellcheck disable=SC2086 # "docker compose" is a command and its argument
  if version=$($candidate version --short 2>/dev/null); then
    # The monitoring profile named, so that its services are checked too.
    COMPOSE_PROFILES=monitoring COMPOSE=$candidate scripts/compose config -q
    echo "lint: docker-compose.yml valid for $candidate (Compose ${version#v})"
    checked=$((checked + 1))
  fi
done
((checked)) || { echo "lint: no Compose found to check docker-compose.yml" >&2; exit 1; }

"$python" swarm/compose_for_stack.py |
  docker stack config -c - -c swarm/docker-compose.swarm.yml >/dev/null
echo "lint: the Swarm stack (swarm/) is valid for docker stack deploy"
"$python" swarm/compose_for_stack.py --configs |
  docker stack config -c - -c swarm/docker-compose.swarm.yml -c swarm/docker-compose.cluster.yml >/dev/null
echo "lint: the three-node stack (swarm/docker-compose.cluster.yml) is valid for docker stack deploy"

nginx_image=$(scripts/compose config | sed -n 's/^ *image: *\(.*nginx.*\)$/\1/p' | head -n 1)
# A throwaway certificate (the template's TLS server needs one), never the user's certs/.
certificates=$(mktemp -d)
trap 'rm -rf "$certificates"' EXIT
TLS_CERT_DIR=$certificates NGINX_IMAGE=$nginx_image scripts/tls-certs.sh >/dev/null
docker run --rm --user 101:101 --read-only --tmpfs /tmp -v "$PWD/nginx:/etc/nginx/gateway:ro" \
  -v "$certificates:/etc/nginx/tls:ro" \
  --entrypoint /bin/sh "$nginx_image" /etc/nginx/gateway/start.sh test 2>&1 | tail -n 1
echo "lint: nginx -t passes in $nginx_image"
