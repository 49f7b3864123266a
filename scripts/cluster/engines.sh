# shellcheck shell=bash disable=SC2154 # its settings come from scripts/cluster.sh
# Each node's own dockerd: its data root, exec root, socket, containerd, iptables and cgroup
# parent. Sourced by scripts/cluster.sh.

sock() { echo "unix://$run/$1/docker.sock"; }
dk() { local node=$1; shift; docker -H "$(sock "$node")" "$@"; }

start_engine() {  # start_engine NODE (also when a lost node boots again)
  local node=$1
  mkdir -p "$run/$node" "$data/$node"
  # unshare --uts gives the node its own hostname (Swarm names nodes by it) and touches no
  # mount or cgroup. The empty --config-file keeps the host's /etc/docker/daemon.json (its
  # data root, its storage driver) away from ours. --shutdown-timeout 2: a node being
  # removed need not wait for its tasks' grace periods.
  # shellcheck disable=SC2016 # $0 and $@ are the inner shell's, on purpose
  start_in_node "$node" dockerd unshare --uts sh -c 'hostname "$0" && exec "$@"' "gwc-$node" \
    dockerd --config-file "$run/empty.json" \
    --data-root "$data/$node" --exec-root "$run/$node/exec" \
    --pidfile "$run/$node/dockerd.pid" -H "$(sock "$node")" \
    --storage-driver fuse-overlayfs --cgroup-parent "$cgroup_prefix-$node" \
    --bip 10.215.0.1/24 --default-address-pool base=10.215.0.0/16,size=24 \
    --shutdown-timeout 2
}

wait_engine() {  # wait_engine NODE
  local deadline=$((SECONDS + 60))
  until dk "$1" version >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "engine $1 did not answer in 60 s; its log: $run/$1/dockerd.log"
    sleep 0.2
  done
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

stop_engines() {  # SIGTERM every engine, wait up to 30 s; each stops its containers
  local pidfile pid deadline=$((SECONDS + 30))
  for pidfile in "$run"/n*/dockerd.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(<"$pidfile")
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi
  done
  for pidfile in "$run"/n*/dockerd.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(<"$pidfile")
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  done
}
