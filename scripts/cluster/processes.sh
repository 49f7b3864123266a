# shellcheck shell=bash disable=SC2154 # its settings come from scripts/cluster.sh
# What belongs to the cluster, found by namespace, cgroup or path, never by process name;
# and the mounts it leaves. Sourced by scripts/cluster.sh (which sets run, data, cgroup_prefix).

# Processes whose network namespace is one of ours: dockerd, containerd, the shims,
# fuse-overlayfs, docker-proxy and keepalived of every node (all started inside a node's
# namespace).
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

close_inherited_files() {  # close every descriptor above stderr in this (sub)shell
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    # 255 is bash's own handle on the script.
    if ((fd > 2 && fd != 255)); then eval "exec $fd>&-"; fi
  done
}

# A daemon of a node: started inside the node's network namespace, detached, its output in
# the node's folder. It outlives this script, so it must not inherit its open files (a lock
# held by `flock ... make cluster-up` would otherwise stay held as long as the cluster runs).
# nsenter --net, not `ip netns exec`: that remounts /sys, and dockerd then fails with
# "Devices cgroup isn't mounted".
start_in_node() {  # start_in_node NODE LOGNAME COMMAND...
  local node=$1 logname=$2
  shift 2
  (close_inherited_files && setsid -f nsenter --net="/run/netns/gwc-$node" "$@" \
    </dev/null >>"$run/$node/$logname.log" 2>&1)
}
