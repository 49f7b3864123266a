#!/usr/bin/env bash
# A Docker Swarm of three separate engines on this one machine, every one a manager with an
# nginx, one floating address in front, and the gateway deployed on it (make cluster-up /
# cluster-down / cluster-test; docs/beyond-one-machine.md, "Three nodes").
#   cluster.sh up             build the cluster, load the images, deploy the stack, start
#                             keepalived on every node, wait until the floating address
#                             answers; on failure remove whatever it had made
#   cluster.sh down           remove everything `up` made and nothing else; idempotent, and it
#                             works on a half-built cluster or after a failed `up`
#   cluster.sh status         the nodes, the address holder, and which task runs where
#   cluster.sh info           KEY=VALUE lines for the tests: sockets, URL, nodes, address
#   cluster.sh lose NODE      a node lost abruptly: its cable cut, every process of it
#                             (engine, containers, keepalived) SIGKILLed
#   cluster.sh restore NODE   the node boots again: no leftover address, cable back, engine
#                             and keepalived started, node Ready
#   cluster.sh holder         the node that holds the floating address
#   cluster.sh move-address NODE
#                             hand the address to NODE (the others' keepalived restarted)
#
# Each step is in one file of scripts/cluster/: processes.sh (what is ours), network.sh (the
# namespaces and cables), engines.sh (each node's dockerd), swarm.sh (managers, the stack),
# floating-address.sh (keepalived). The host's state before and after: scripts/host-state.sh.
#
# Each node is a network namespace (+ UTS, for its own hostname) running its own dockerd,
# with its own data root, exec root, socket, containerd, iptables and cgroup parent. No
# Docker-in-Docker (privileged containers are refused here) and no node shares another's
# network stack. Namespaced engines only, so that the host engine's swarm state (which
# `make swarm-test` may change meanwhile) is never touched. Ranges of our own, clear of
# Docker's defaults (172.17-31/16, 192.168/16): the underlay 10.213.0.0/24, the swarm's
# overlay networks 10.214.0.0/16, each engine's own bridges 10.215.0.0/16.
# The kernel here has no IPVS, so Swarm's VIPs and routing mesh do not work: the stack uses
# dnsrr and host-mode ports (swarm/docker-compose.swarm.yml) and needs neither.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${CLUSTER_NODES:-3}
# Swarm's default. With 1s a lost node is Down in ~3 s instead of ~11 s, but on a loaded
# two-core host a stalled engine could then be declared Down by mistake.
heartbeat=${CLUSTER_HEARTBEAT:-5s}
stack=${STACK:-gateway}
python=${PYTHON:-python3}
underlay=10.213.0
host_ip=$underlay.1
# The floating address: in the underlay, outside the nodes' own addresses (.11-.19).
vip=${CLUSTER_VIP:-$underlay.10}
run=/run/gateway-cluster        # exec roots, sockets, pid files, logs: volatile, like /run
data=/var/lib/gateway-cluster   # data roots: what a node keeps across a reboot
cgroup_prefix=gateway-cluster

log() { printf '[%(%H:%M:%S)T] cluster: %s\n' -1 "$*"; }
die() { echo "cluster: $*" >&2; exit 1; }

# One file per concern; each uses the settings above.
# shellcheck source=scripts/cluster/processes.sh
source scripts/cluster/processes.sh
# shellcheck source=scripts/cluster/network.sh
source scripts/cluster/network.sh
# shellcheck source=scripts/cluster/engines.sh
source scripts/cluster/engines.sh
# shellcheck source=scripts/cluster/swarm.sh
source scripts/cluster/swarm.sh
# shellcheck source=scripts/cluster/floating-address.sh
source scripts/cluster/floating-address.sh

# docker stack deploy does not read .env: export its settings, the environment winning
# (as scripts/swarm.sh does).
if [[ -f .env ]]; then
  while IFS='=' read -r name value; do
    if [[ $name =~ ^[A-Z][A-Z0-9_]*$ && -z ${!name+set} ]]; then export "$name=$value"; fi
  done <.env
fi
port=${GATEWAY_PORT:-8000}
app_image=${APP_IMAGE:-flask-gateway}:${APP_VERSION:-1.0.0}
nginx_image=${NGINX_IMAGE:-nginx:1.30}

need_root() {
  [[ $(id -u) == 0 ]] || die "needs root (ip netns, nsenter, dockerd, keepalived); run it as root"
}

preflight() {
  need_root
  local tool
  for tool in ip nsenter unshare setsid dockerd docker fuse-overlayfs curl keepalived; do
    command -v "$tool" >/dev/null || die "missing $tool (make cluster-tools installs them)"
  done
  ((nodes >= 2 && nodes <= 9)) || die "CLUSTER_NODES must be 2 to 9"
  if [[ -e /run/netns/gwc-sw || -d $run || -d $data ]] || ip link show gwc-host >/dev/null 2>&1; then
    die "a cluster (or what is left of one) exists: run 'make cluster-down' first"
  fi
  # Never on top of a network that is already here.
  if ip -4 -o addr show | grep -qE ' 10\.21[345]\.' || ip -4 route show table all | grep -qE '(^| )10\.21[345]\.'; then
    die "10.213-215.x is already in use on this host; refusing to clash"
  fi
}

# --- up ---

up() {
  preflight
  mkdir -p "$run" "$data"
  # From here on, a failure removes whatever was made.
  trap 'echo "cluster: up failed; removing what it made" >&2; down >&2' EXIT
  echo '{}' >"$run/empty.json"
  local started=$SECONDS i
  make_network
  log "network: $nodes node namespaces and a switch ($((SECONDS - started)) s)"
  for i in $(seq 1 "$nodes"); do start_engine "n$i"; done
  for i in $(seq 1 "$nodes"); do wait_engine "n$i"; done
  log "engines: $nodes dockerds answer ($((SECONDS - started)) s)"
  load_images
  log "images: $app_image and $nginx_image in every engine ($((SECONDS - started)) s)"
  make_swarm
  log "swarm: $nodes managers, all Ready ($((SECONDS - started)) s)"
  deploy
  log "stack $stack: nginx answers on every node ($((SECONDS - started)) s)"
  # n1 first, alone: it made the swarm, so it is the Raft leader too, and the address
  # starts on the node that is both (the scenario loses that one).
  start_keepalived n1
  wait_holder >/dev/null
  for i in $(seq 2 "$nodes"); do start_keepalived "n$i"; done
  wait_serving "$vip"
  trap - EXIT
  log "keepalived on every node; $(holders) holds $vip ($((SECONDS - started)) s in all)"
  status
  echo "url: http://$vip:$port   manager: docker -H $(sock n1) ...   remove it all: make cluster-down"
}

# --- down ---

down() {
  need_root
  local started=$SECONDS pid sig pids
  # 1. Stop the engines; each stops its containers and its containerd.
  stop_engines
  # 2. Whatever of ours still runs: keepalived, a slow engine, a lost node's orphans. Each
  # by its pid.
  for sig in TERM KILL; do
    pids=$(cluster_pids)
    [[ -n $pids ]] || break
    log "SIG$sig to what is left: $(echo "$pids" | tr '\n' ' ')"
    for pid in $pids; do kill "-$sig" "$pid" 2>/dev/null || true; done
    sleep 2
  done
  # 3. Mounts below our folders, deepest first.
  unmount_below "$run" "$data"
  # 4. The network.
  remove_network
  # 5. The cgroups --cgroup-parent made, children first.
  local group
  for group in /sys/fs/cgroup/*/"$cgroup_prefix"-n*/; do
    if [[ -d $group ]]; then find "$group" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  done
  # 6. The folders.
  rm -rf "$run" "$data"
  # 7. Prove it: nothing of the cluster is left.
  local left=()
  if ip netns list 2>/dev/null | grep -q '^gwc-'; then left+=(namespaces); fi
  if ip -o link | grep -q 'gwc-'; then left+=(interfaces); fi
  if grep -qE " ($run|$data)[/ ]" /proc/self/mountinfo; then left+=(mounts); fi
  if compgen -G "/sys/fs/cgroup/*/$cgroup_prefix-*" >/dev/null; then left+=(cgroups); fi
  if [[ -n $(cluster_pids) ]]; then left+=("processes $(cluster_pids | tr '\n' ' ')"); fi
  if [[ -e $run || -e $data ]]; then left+=(folders); fi
  if ((${#left[@]})); then die "left behind: ${left[*]}"; fi
  log "removed, nothing of it left ($((SECONDS - started)) s)"
}

# --- a node lost, a node back ---

node_of_cluster() {  # node_of_cluster NODE: check that NODE is a node of this cluster
  [[ ${1:-} =~ ^n[1-9]$ && -e /run/netns/gwc-$1 ]] || die "'${1:-}' is not a node here (n1..n$nodes)"
}

lose() {  # lose NODE: as if it lost power
  need_root
  node_of_cluster "$1"
  # The cable first, so that the rest of the cluster sees silence, as from a dead machine:
  # no RST, no FIN, no last VRRP advert, nothing. Then every process of the node, engine,
  # containers and keepalived alike.
  cut_cable "$1"
  local cut_at=$EPOCHREALTIME pids
  pids=$(node_pids "$1")
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null || true
  fi
  # The instant of the cut (Unix time), for the tests' count of requests in flight then.
  log "$1 lost: cable cut at $cut_at, $(wc -w <<<"$pids") processes SIGKILLed"
}

restore() {  # restore NODE: the machine boots again with its disk (data root) as it was
  need_root
  node_of_cluster "$1"
  local started=$SECONDS pids
  pids=$(node_pids "$1")
  [[ -z $pids ]] || die "$1 still runs processes ($pids): lose it first"
  # A reboot leaves no mounts, no address it held, and an empty /run: clear what the killed
  # processes held.
  unmount_below "$run/$1" "$data/$1"
  rm -rf "$run/$1/exec" "$run/$1/dockerd.pid" "$run/$1/keepalived"
  drop_leftover_address "$1"
  # The cable first, as a machine's network is up before its services: an engine that holds
  # swarm state waits up to 20 s for its managers before it answers at all. Its old
  # containers were killed with it; it removes them as it starts (no live-restore).
  plug_cable "$1"
  start_engine "$1"
  start_keepalived "$1"
  wait_engine "$1"
  log "$1: cable back, engine answers, keepalived started ($((SECONDS - started)) s)"
  wait_ready "$nodes"
  log "$1: node Ready ($((SECONDS - started)) s)"
}

status() {
  ask_manager node ls --format 'table {{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}'
  echo
  echo "floating address $vip on: $(holders | tr '\n' ' ')"
  echo
  ask_manager service ps --filter desired-state=running \
    --format 'table {{.Node}}\t{{.Name}}\t{{.CurrentState}}' "${stack}_app" "${stack}_nginx" |
    sort -k1,1 -s
}

info() {
  echo "CLUSTER_DOCKER_HOST=$(sock n1)"
  echo "CLUSTER_URL=http://$vip:$port"
  echo "CLUSTER_VIP=$vip"
  echo "CLUSTER_PORT=$port"
  echo "CLUSTER_STACK=$stack"
  local i
  for i in $(seq 1 "$nodes"); do echo "CLUSTER_NODE_n$i=gwc-n$i $(node_ip "n$i") $(sock "n$i")"; done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  info) info ;;
  lose) lose "${2:-}" ;;
  restore) restore "${2:-}" ;;
  holder) holders ;;
  move-address) node_of_cluster "${2:-}" && move_address_to "$2" ;;
  *) echo "usage: cluster.sh up|down|status|info|holder|lose NODE|restore NODE|move-address NODE" >&2; exit 2 ;;
esac
