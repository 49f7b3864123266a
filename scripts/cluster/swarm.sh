# shellcheck shell=bash disable=SC2154 # its settings come from scripts/cluster.sh
# The Swarm: every node a manager (Raft keeps a leader with one of three lost), the stack
# deployed over it. Sourced by scripts/cluster.sh.

# Explicit addresses on every init and join: with the floating address as a second address
# on eth0, Swarm would otherwise refuse to pick one (moby/moby#25327).
swarm_addresses() {  # swarm_addresses NODE
  local ip
  ip=$(node_ip "$1")
  echo "--advertise-addr $ip --listen-addr $ip:2377 --data-path-addr $ip"
}

make_swarm() {
  # shellcheck disable=SC2046 # swarm_addresses prints options, split on purpose
  dk n1 swarm init $(swarm_addresses n1) --dispatcher-heartbeat "$heartbeat" \
    --default-addr-pool 10.214.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
  local token i
  token=$(dk n1 swarm join-token -q manager)
  for i in $(seq 2 "$nodes"); do
    # One at a time: a manager joins through a Raft change that needs the previous one done.
    # shellcheck disable=SC2046
    dk "n$i" swarm join $(swarm_addresses "n$i") --token "$token" "$(node_ip n1):2377" >/dev/null
  done
  wait_ready "$nodes"
}

# The docker CLI against whichever manager answers: a lost node's engine is gone, and during
# an election every manager says "The swarm does not have a leader". For reading commands
# only (it retries them, for up to 90 s).
ask_manager() {
  local deadline=$((SECONDS + 90)) i out
  while :; do
    for i in $(seq 1 "$nodes"); do
      if out=$(dk "n$i" "$@" 2>&1); then
        printf '%s\n' "$out"
        return 0
      fi
    done
    ((SECONDS < deadline)) || die "no manager answered 'docker $*' in 90 s; the last said: $out"
    sleep 1
  done
}

wait_ready() {  # wait_ready COUNT: until COUNT nodes are Ready
  local deadline=$((SECONDS + 180)) ready=0
  while ((SECONDS < deadline)); do
    ready=$(ask_manager node ls --format '{{.Status}}' | grep -c '^Ready$' || true)
    ((ready == $1)) && return 0
    sleep 0.5
  done
  die "only $ready of $1 nodes Ready after 180 s"
}

wait_serving() {  # wait_serving ADDRESS: until nginx answers there
  local deadline=$((SECONDS + 180))
  until curl -fsS -o /dev/null --max-time 3 "http://$1:$port/nginx-healthz"; do
    ((SECONDS < deadline)) || die "nginx does not answer on $1:$port after 180 s"
    sleep 1
  done
}

deploy() {
  # The certificate nginx serves on GATEWAY_TLS_PORT, as make up makes it (certs/).
  scripts/tls-certs.sh >/dev/null
  # The project's compose file as the stack loader takes it, nginx's files as Swarm configs
  # (its key as a secret), then the single-node Swarm settings and the multi-node ones on top.
  "$python" swarm/compose_for_stack.py --configs docker-compose.yml |
    timeout "${CLUSTER_DEPLOY_SECONDS:-420}" docker -H "$(sock n1)" stack deploy --detach=false \
      --quiet --resolve-image never --prune -c - -c swarm/docker-compose.swarm.yml \
      -c swarm/docker-compose.cluster.yml "$stack"
  local i
  for i in $(seq 1 "$nodes"); do wait_serving "$(node_ip "n$i")"; done
}
