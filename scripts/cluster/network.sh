# shellcheck shell=bash disable=SC2154 # its settings come from scripts/cluster.sh
# The underlay: one network namespace per node, a "switch" namespace with a bridge, each
# node's cable (a veth) plugged into it, and the host's one leg. Sourced by scripts/cluster.sh.
#
#   gwc-n1 eth0 10.213.0.11 ─┐
#   gwc-n2 eth0 10.213.0.12 ─┼─ gwc-br0 in namespace gwc-sw ─ gwc-host 10.213.0.1 (host)
#   gwc-n3 eth0 10.213.0.13 ─┘   (the floating address 10.213.0.10 on one node's eth0)
#
# The bridge lives in the switch namespace, so the host gains exactly one interface
# (gwc-host) and one connected route, and no iptables rule or forwarding.

node_ip() { echo "$underlay.$((10 + ${1#n}))"; }

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
  # The host's one leg into the switch: the tests reach the floating address through it.
  ip link add gwc-host type veth peer name gwc-host-p netns gwc-sw
  ip -n gwc-sw link set gwc-host-p master gwc-br0 up
  ip addr add "$host_ip/24" dev gwc-host
  ip link set gwc-host up
}

cut_cable() { ip -n gwc-sw link set "gwc-$1-p" down; }
plug_cable() { ip -n gwc-sw link set "gwc-$1-p" up; }

remove_network() {
  # Deleting a namespace deletes its interfaces, and a veth takes its peer.
  local namespace
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
}
