#!/usr/bin/env bash
# A Docker Swarm of three separate engines on this one machine, and the gateway deployed on
# it (make cluster-up / cluster-down / cluster-test; docs/beyond-one-machine.md, "Three nodes").
#   cluster.sh up             build the cluster, load the images, deploy the stack, wait until
#                             nginx answers; on failure remove whatever it had made
#   cluster.sh down           remove everything `up` made and nothing else; idempotent, and it
#                             works on a half-built cluster or after a failed `up`
#   cluster.sh status         the nodes, and which task runs where
#   cluster.sh info           KEY=VALUE lines for the tests: manager socket, URL, nodes
#   cluster.sh lose NODE      a worker lost abruptly: its cable cut, every process of it SIGKILLed
#   cluster.sh restore NODE   the worker boots again: engine started, cable back, node Ready
#
# Each node is a network namespace (+ UTS, for its own hostname) running its own dockerd,
# with its own data root, exec root, socket, containerd, iptables and cgroup parent. No
# Docker-in-Docker (privileged containers are refused here) and no node shares another's
# network stack. n1 is the manager: a namespaced one, so that the host engine's swarm state
# (which `make swarm-test` may change meanwhile) is never touched.
#
#   gwc-n1 eth0 10.213.0.11 ─┐
#   gwc-n2 eth0 10.213.0.12 ─┼─ gwc-br0 in namespace gwc-sw ─ gwc-host 10.213.0.1 (host)
#   gwc-n3 eth0 10.213.0.13 ─┘
#
# The bridge lives in a "switch" namespace, so the host gains exactly one interface
# (gwc-host) and one connected route, and no iptables rule or forwarding. Ranges of our own,
# clear of Docker's defaults (172.17-31/16, 192.168/16): the underlay 10.213.0.0/24, the
# swarm's overlay networks 10.214.0.0/16, each engine's own bridges 10.215.0.0/16.
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
run=/run/gateway-cluster        # exec roots, sockets, pid files, logs: volatile, like /run
data=/var/lib/gateway-cluster   # data roots: what a node keeps across a reboot
cgroup_prefix=gateway-cluster

log() { printf '[%(%H:%M:%S)T] cluster: %s\n' -1 "$*"; }
die() { echo "cluster: $*" >&2; exit 1; }
node_ip() { echo "$underlay.$((10 + ${1#n}))"; }
sock() { echo "unix://$run/$1/docker.sock"; }
dk() { local node=$1; shift; docker -H "$(sock "$node")" "$@"; }
manager() { dk n1 "$@"; }

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
  [[ $(id -u) == 0 ]] || die "needs root (ip netns, nsenter, dockerd); run it as root"
}

# --- what belongs to the cluster: by namespace, cgroup or path, never by process name ---

# Processes whose network namespace is one of ours: dockerd, containerd, the shims,
# fuse-overlayfs and docker-proxy of every node (all started inside a node's namespace).
pids_in_netns() {  # pids_in_netns NAMESPACE...
  local ns inodes=() pid
  for ns in "$@"; do
    [[ -e /run/netns/$ns ]] && inodes+=("net:[$(stat -L -c %i "/run/netns/$ns")]")
  done
  ((${#inodes[@]})) || return 0
  for pid in /proc/[0-9]*; do
    local link
    link=$(readlink "$pid/ns/net" 2>/dev/null) || continue
    if [[ " ${inodes[*]} " == *" $link "* ]]; then echo "${pid#/proc/}"; fi
  done
}

# Processes in a node's container cgroups (--cgroup-parent): the containers, which live
# in sandbox namespaces of their own and may outlive a SIGKILLed shim.
pids_in_cgroups() {  # pids_in_cgroups [NODE]: one node's, or every node's
  local file files
  if [[ -n ${1:-} ]]; then
    files=(/sys/fs/cgroup/*/"$cgroup_prefix-$1"/{,*/}cgroup.procs)
  else
    files=(/sys/fs/cgroup/*/"$cgroup_prefix"-n*/{,*/}cgroup.procs)
  fi
  for file in "${files[@]}"; do
    if [[ -f $file ]]; then cat "$file" 2>/dev/null || true; fi
  done
}

# Processes whose command line names one of our folders (in case one left its namespace).
pids_by_path() {  # pids_by_path PREFIX...
  local pid cmd prefix
  for pid in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$pid/cmdline") || continue
    for prefix in "$@"; do
      if [[ $cmd == *"$prefix"* ]]; then echo "${pid#/proc/}"; break; fi
    done
  done
}

node_pids() {  # every process of one node
  { pids_in_netns "gwc-$1"; pids_in_cgroups "$1"; pids_by_path "$run/$1/" "$data/$1/"; } |
    sort -un | grep -vx "$$" || true
}

cluster_pids() {  # every process of the whole cluster
  local namespaces
  mapfile -t namespaces < <(ip netns list 2>/dev/null | awk '$1 ~ /^gwc-/ { print $1 }')
  { pids_in_netns "${namespaces[@]}"; pids_in_cgroups; pids_by_path "$run/" "$data/"; } |
    sort -un | grep -vx "$$" || true
}

# Mount points below the given folders, deepest first: fuse-overlayfs layers, the nsfs
# bind mounts that keep sandbox namespaces alive, dockerd's own bind mounts.
unmount_below() {  # unmount_below FOLDER...
  local round mounts mount
  for round in 1 2 3; do
    mounts=$(awk '{ print $5 }' /proc/self/mountinfo | while read -r mount; do
      for folder in "$@"; do
        if [[ $mount == "$folder" || $mount == "$folder"/* ]]; then echo "$mount"; fi
      done
    done | awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2-)
    [[ -n $mounts ]] || return 0
    while read -r mount; do
      umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
    done <<<"$mounts"
    ((round < 3)) || echo "cluster: still mounted: $mounts" >&2
  done
}

# --- up ---

close_inherited_files() {  # close every descriptor above stderr in this (sub)shell
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    # 255 is bash's own handle on the script.
    if ((fd > 2 && fd != 255)); then eval "exec $fd>&-"; fi
  done
}

start_engine() {  # start_engine NODE (also when a lost node boots again)
  local node=$1
  mkdir -p "$run/$node" "$data/$node"
  # nsenter --net, not `ip netns exec`: that remounts /sys, and dockerd then fails with
  # "Devices cgroup isn't mounted". unshare --uts gives the node its own hostname (Swarm
  # names nodes by it) and touches no mount or cgroup. The empty --config-file keeps the
  # host's /etc/docker/daemon.json (its data root, its storage driver) away from ours.
  # --shutdown-timeout 2: a node being removed need not wait for its tasks' grace periods.
  # The daemons outlive this script: they must not inherit its open files (a lock held
  # by `flock ... make cluster-up` would otherwise stay held as long as the cluster runs).
  # shellcheck disable=SC2016 # $0 and $@ are the inner shell's, on purpose
  (close_inherited_files && setsid -f nsenter --net="/run/netns/gwc-$node" \
    unshare --uts sh -c 'hostname "$0" && exec "$@"' "gwc-$node" \
    dockerd --config-file "$run/empty.json" \
    --data-root "$data/$node" --exec-root "$run/$node/exec" \
    --pidfile "$run/$node/dockerd.pid" -H "$(sock "$node")" \
    --storage-driver fuse-overlayfs --cgroup-parent "$cgroup_prefix-$node" \
    --bip 10.215.0.1/24 --default-address-pool base=10.215.0.0/16,size=24 \
    --shutdown-timeout 2 \
    </dev/null >>"$run/$node/dockerd.log" 2>&1)
}

wait_engine() {  # wait_engine NODE
  local deadline=$((SECONDS + 60))
  until dk "$1" version >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "engine $1 did not answer in 60 s; its log: $run/$1/dockerd.log"
    sleep 0.2
  done
}

wait_ready() {  # wait_ready COUNT: until COUNT nodes are Ready
  local deadline=$((SECONDS + 120)) ready=0
  while ((SECONDS < deadline)); do
    ready=$(manager node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true)
    ((ready == $1)) && return 0
    sleep 0.5
  done
  die "only $ready of $1 nodes Ready after 120 s"
}

preflight() {
  need_root
  local tool
  for tool in ip nsenter unshare setsid dockerd docker fuse-overlayfs curl; do
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

make_network() {
  # `ip netns add` creates and bind-mounts /run/netns when it is missing: note whether it
  # was here, so that `down` leaves it exactly as found.
  if [[ -d /run/netns ]]; then touch "$run/run-netns-was-here"; fi
  ip netns add gwc-sw
  ip -n gwc-sw link set lo up
  ip -n gwc-sw link add gwc-br0 type bridge
  ip -n gwc-sw link set gwc-br0 up
  local i
  for i in $(seq 1 "$nodes"); do
    ip netns add "gwc-n$i"
    # The cable: eth0 in the node, gwc-nI-p in the switch (`lose` pulls this end).
    ip link add "gwc-n$i-p" netns gwc-sw type veth peer name eth0 netns "gwc-n$i"
    ip -n gwc-sw link set "gwc-n$i-p" master gwc-br0 up
    ip -n "gwc-n$i" addr add "$(node_ip "n$i")/24" dev eth0
    ip -n "gwc-n$i" link set eth0 up
    ip -n "gwc-n$i" link set lo up
  done
  # The host's one leg into the switch: the tests reach nginx's published port through it.
  ip link add gwc-host type veth peer name gwc-host-p netns gwc-sw
  ip -n gwc-sw link set gwc-host-p master gwc-br0 up
  ip addr add "$host_ip/24" dev gwc-host
  ip link set gwc-host up
}

load_images() {
  # No registry: the app image is built from the working tree on the host engine, saved
  # once with the nginx image, and loaded into every engine.
  scripts/compose build app
  docker save -o "$data/images.tar" "$app_image" "$nginx_image"
  local i pids=()
  for i in $(seq 1 "$nodes"); do
    dk "n$i" load -q -i "$data/images.tar" >/dev/null &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || die "an engine failed to load the images"; done
  rm -f "$data/images.tar"
}

make_swarm() {
  manager swarm init --advertise-addr "$(node_ip n1)" --listen-addr "$(node_ip n1):2377" \
    --data-path-addr "$(node_ip n1)" --dispatcher-heartbeat "$heartbeat" \
    --default-addr-pool 10.214.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
  local token i
  token=$(manager swarm join-token -q worker)
  for i in $(seq 2 "$nodes"); do
    dk "n$i" swarm join --advertise-addr "$(node_ip "n$i")" --listen-addr "$(node_ip "n$i"):2377" \
      --data-path-addr "$(node_ip "n$i")" --token "$token" "$(node_ip n1):2377" >/dev/null
  done
  wait_ready "$nodes"
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
  local deadline=$((SECONDS + 120))
  until curl -fsS -o /dev/null --max-time 3 "http://$(node_ip n1):$port/info"; do
    ((SECONDS < deadline)) || die "nginx does not answer on $(node_ip n1):$port after 120 s"
    sleep 1
  done
}

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
  log "swarm: n1 manager, $((nodes - 1)) workers, all Ready ($((SECONDS - started)) s)"
  deploy
  trap - EXIT
  log "stack $stack serves on http://$(node_ip n1):$port ($((SECONDS - started)) s in all)"
  status
  echo "manager: docker -H $(sock n1) ...   remove it all: make cluster-down"
}

# --- down ---

down() {
  need_root
  local started=$SECONDS pidfile pid sig pids namespace
  # 1. Stop the engines; each stops its containers and its containerd.
  for pidfile in "$run"/n*/dockerd.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(<"$pidfile")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
  done
  local deadline=$((SECONDS + 30))
  for pidfile in "$run"/n*/dockerd.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(<"$pidfile")
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  done
  # 2. Whatever of ours still runs: a slow engine, a lost node's orphans. Each by its pid.
  for sig in TERM KILL; do
    pids=$(cluster_pids)
    [[ -n $pids ]] || break
    log "SIG$sig to what is left: $(echo "$pids" | tr '\n' ' ')"
    for pid in $pids; do kill "-$sig" "$pid" 2>/dev/null || true; done
    sleep 2
  done
  # 3. Mounts below our folders, deepest first.
  unmount_below "$run" "$data"
  # 4. The network: deleting a namespace deletes its interfaces, and a veth takes its peer.
  for namespace in $(ip netns list 2>/dev/null | awk '$1 ~ /^gwc-/ { print $1 }'); do
    ip netns del "$namespace"
  done
  if ip link show gwc-host >/dev/null 2>&1; then ip link del gwc-host; fi
  if [[ -d $run && ! -e $run/run-netns-was-here && -d /run/netns && -z $(ls -A /run/netns) ]]; then
    while awk '$5 == "/run/netns" { found = 1 } END { exit !found }' /proc/self/mountinfo; do
      umount /run/netns
    done
    rmdir /run/netns
  fi
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

worker() {  # worker NODE: check that NODE is a worker of this cluster
  [[ ${1:-} =~ ^n[2-9]$ && -e /run/netns/gwc-$1 ]] ||
    die "'${1:-}' is not a worker here (n2..n$nodes); n1, the only manager, is never lost"
}

lose() {  # lose NODE: as if it lost power
  need_root
  worker "$1"
  # The cable first, so that the rest of the cluster sees silence, as from a dead machine:
  # no RST, no FIN, nothing. Then every process of the node, engine and containers alike.
  ip -n gwc-sw link set "gwc-$1-p" down
  local pids
  pids=$(node_pids "$1")
  if [[ -n $pids ]]; then
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $pids 2>/dev/null || true
  fi
  log "$1 lost: cable cut, $(wc -w <<<"$pids") processes SIGKILLed"
}

restore() {  # restore NODE: the machine boots again with its disk (data root) as it was
  need_root
  worker "$1"
  local started=$SECONDS pids
  pids=$(node_pids "$1")
  [[ -z $pids ]] || die "$1 still runs processes ($pids): lose it first"
  # A reboot leaves no mounts and an empty /run: clear what the killed processes held.
  unmount_below "$run/$1" "$data/$1"
  rm -rf "$run/$1/exec" "$run/$1/dockerd.pid"
  # The cable first, as a machine's network is up before its engine: an engine that holds
  # swarm state waits up to 20 s for its manager before it answers at all. Its old
  # containers were killed with it; it removes them as it starts (no live-restore).
  ip -n gwc-sw link set "gwc-$1-p" up
  start_engine "$1"
  wait_engine "$1"
  log "$1: cable back, engine answers ($((SECONDS - started)) s)"
  wait_ready "$nodes"
  log "$1: node Ready ($((SECONDS - started)) s)"
}

status() {
  manager node ls --format 'table {{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}'
  echo
  manager service ps --filter desired-state=running \
    --format 'table {{.Node}}\t{{.Name}}\t{{.CurrentState}}' "${stack}_app" "${stack}_nginx" |
    sort -k1,1 -s
}

info() {
  echo "CLUSTER_DOCKER_HOST=$(sock n1)"
  echo "CLUSTER_URL=http://$(node_ip n1):$port"
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
  *) echo "usage: cluster.sh up|down|status|info|lose NODE|restore NODE" >&2; exit 2 ;;
esac
