#!/usr/bin/env bash
# The host state scripts/cluster.sh must leave as it found it, and the proof that it did.
#   host-state.sh save DIR          record it in DIR
#   host-state.sh compare BEFORE AFTER
#                                   diff two records; exit 0 when nothing of the cluster's is
#                                   left and nothing else changed but the host engine's own
#                                   objects (other people's Compose stacks and swarms)
# Namespaces, interfaces, addresses, routes, iptables (filter and nat, legacy and v6), mounts,
# cgroups, sysctls, engine processes, the host engine's swarm state and networks.
set -euo pipefail

save() {
  local dir=$1
  mkdir -p "$dir"
  # iptables-save's comments carry a date, its counters move with traffic: drop both.
  strip() { { grep -v '^#' || true; } | sed 's/\[[0-9]*:[0-9]*\]//'; }
  ip netns list >"$dir/netns"
  { [[ -e /run/netns ]] && echo "/run/netns present" || echo "/run/netns absent"; } >>"$dir/netns"
  ip -o link | sed -E 's/^[0-9]+: //; s/\s+/ /g' | sort >"$dir/link"
  ip -o addr | sed -E 's/^[0-9]+: //' | sort >"$dir/addr"
  ip route show table all | sort >"$dir/route"
  iptables-save 2>/dev/null | strip >"$dir/iptables"
  iptables-save -t nat 2>/dev/null | strip >"$dir/iptables-nat"
  { iptables-legacy-save 2>/dev/null || true; } | strip >"$dir/iptables-legacy"
  { ip6tables-save 2>/dev/null || true; } | strip >"$dir/ip6tables"
  docker info --format 'swarm={{.Swarm.LocalNodeState}} node={{.Swarm.NodeID}} root={{.DockerRootDir}}' >"$dir/docker-info"
  docker network ls --format '{{.ID}} {{.Name}} {{.Driver}} {{.Scope}}' | sort >"$dir/docker-networks"
  # Sandbox namespaces of the host engine's containers come and go with other people's tests.
  awk '{ print $5, $9 }' /proc/self/mountinfo | grep -v '^/run/docker/netns/' | sort >"$dir/mounts"
  { ls -d /sys/fs/cgroup/*/*/ 2>/dev/null || true; } >"$dir/cgroups"
  sysctl -a 2>/dev/null | grep -E '^net\.(ipv4\.ip_forward|bridge\.)' | sort >"$dir/sysctl" || true
  # Zombies left out: this host's init reaps the host engine's exited helpers in batches.
  { pgrep -a -x 'dockerd|containerd|fuse-overlayfs|containerd-shim-runc-v2|docker-proxy|keepalived' || true; } |
    cut -d' ' -f2- | { grep -v '<defunct>$' || true; } | sort >"$dir/processes"
  for path in /run/gateway-cluster /var/lib/gateway-cluster; do
    if [[ -e $path ]]; then echo "present $path"; else echo "absent"; fi
  done >"$dir/paths"
}

compare() {
  local before=$1 after=$2 status=0 file name raw filtered
  # The host engine's own objects, which others' Compose tests make and remove meanwhile:
  # *_default networks, br-<id> bridges and veth<id> ports, their /32 iptables rules,
  # their layers' mounts, their containers' processes.
  local host_engine='^[0-9a-f]{12} [^ ]+ (bridge|overlay|null|host) (local|swarm)$|br-[0-9a-f]{12}|veth[0-9a-f]{7}|^docker0[: ]|dev docker0 |docker_gwbridge|172\.(1[6-9]|2[0-9]|3[01])\.[0-9]+\.[0-9]+|192\.168\.[0-9]+\.[0-9]+/32|^/var/lib/docker/|^containerd-shim-runc-v2 .*-address /run/containerd/|docker-proxy .*-container-ip (172|192\.168)\.|^fuse-overlayfs .*/var/lib/docker/'
  for file in "$before"/*; do
    name=$(basename "$file")
    raw=$(diff "$file" "$after/$name" || true)
    filtered=$(diff <(grep -Ev "$host_engine" "$file" || true) <(grep -Ev "$host_engine" "$after/$name" || true) || true)
    printf '%-16s raw diff %3s lines; without the host engine'"'"'s objects %s\n' "$name" \
      "$(grep -c '^[<>]' <<<"$raw" || true)" "$(grep -c '^[<>]' <<<"$filtered" || true)"
    if [[ -n $filtered ]]; then echo "$filtered"; status=1; fi
  done
  if grep -rEn 'gwc-|gateway-cluster|10\.21[345]\.' "$after"; then
    echo "host-state: traces of the cluster in $after"
    status=1
  else
    echo "host-state: no trace of the cluster (gwc-*, gateway-cluster, 10.213-215.x) in $after"
  fi
  return "$status"
}

case "${1:-}" in
  save) save "${2:?usage: host-state.sh save DIR}" ;;
  compare) compare "${2:?usage: host-state.sh compare BEFORE AFTER}" "${3:?}" ;;
  *) echo "usage: host-state.sh save DIR | compare BEFORE AFTER" >&2; exit 2 ;;
esac
