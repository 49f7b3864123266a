# shellcheck shell=bash disable=SC2154 # its settings come from scripts/cluster.sh
# The floating address clients use: keepalived (Debian's package) on every node, as operators
# install it, one process per node inside the node's network namespace, with its own config,
# pid files and log in the node's folder. VRRP moves the address; no failover code here.
# Sourced by scripts/cluster.sh. Why this design: docs/beyond-one-machine.md, "One address".

keepalived_config() {  # keepalived_config NODE: the node's keepalived.conf
  local node=$1 ip peers="" i
  ip=$(node_ip "$node")
  for i in $(seq 1 "$nodes"); do
    [[ n$i == "$node" ]] || peers+="    $(node_ip "n$i")"$'\n'
  done
  cat <<CONF
# $node's keepalived (scripts/cluster/floating-address.sh).
global_defs {
  router_id gwc-$node
  # The check runs unprivileged; keepalived refuses scripts that others could rewrite.
  script_user nobody nogroup
  enable_script_security
}

# The local nginx answers on the node's own address (host-mode port).
vrrp_script nginx_answers {
  script "/usr/bin/curl -fsS -o /dev/null --max-time 1 http://$ip:$port/nginx-healthz"
  interval 1
  timeout 2
  fall 1
  # Answering 3 s in a row before counting again: a restarting nginx does not flap.
  rise 3
  # A negative weight, never 0: weight 0 would put the instance in FAULT, and with every
  # nginx failing no node would hold the address. Here the failing holder drops to 50,
  # below the others' 100, and a healthy node takes over (preemption by priority).
  weight -50
  # A booting node counts as unhealthy until its nginx answers.
  init_fail
}

vrrp_instance gateway {
  # Every node starts as BACKUP at the same priority. A node that comes back hears the
  # holder's adverts at a priority equal to its own and stays BACKUP (RFC 5798 6.4.2: a
  # backup preempts only a lower priority), so it never takes the address back. Not
  # nopreempt: with it, a lower priority never moves the address (the failing-nginx case).
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority 100
  advert_int 1
  # Unicast over the underlay: what a network without multicast (most clouds' VPCs that
  # allow VRRP at all) needs, and it does not depend on the bridge's multicast handling.
  unicast_src_ip $ip
  unicast_peer {
$peers  }
  virtual_ipaddress {
    $vip/32 dev eth0
  }
  track_script {
    nginx_answers
  }
}
CONF
}

start_keepalived() {  # start_keepalived NODE
  local node=$1
  mkdir -p "$run/$node/keepalived"
  keepalived_config "$node" >"$run/$node/keepalived.conf"
  # --vrrp: only the VRRP subsystem (no IPVS checker); pid files in the node's folder, not
  # /run, so three can run at once; --dont-fork under setsid, its log in the node's folder.
  start_in_node "$node" keepalived keepalived --vrrp --dont-fork --log-console --log-detail \
    --no-syslog --use-file "$run/$node/keepalived.conf" \
    --pid "$run/$node/keepalived/keepalived.pid" --vrrp_pid "$run/$node/keepalived/vrrp.pid"
}

holders() {  # the nodes that have the floating address on their eth0, one a line
  local i
  for i in $(seq 1 "$nodes"); do
    if ip -n "gwc-n$i" -4 -o addr show dev eth0 2>/dev/null | grep -q " $vip/"; then
      echo "n$i"
    fi
  done
}

# A machine that boots has no address it held before; a SIGKILLed keepalived leaves it on
# the interface. Before the cable is back, so that there are never two holders.
drop_leftover_address() {  # drop_leftover_address NODE
  if ip -n "gwc-$1" -4 -o addr show dev eth0 | grep -q " $vip/"; then
    ip -n "gwc-$1" addr del "$vip/32" dev eth0
  fi
}

wait_holder() {  # wait_holder: until exactly one node holds the address; prints it
  local deadline=$((SECONDS + 60)) found
  while ((SECONDS < deadline)); do
    found=$(holders)
    if [[ -n $found && $(wc -l <<<"$found") == 1 ]]; then
      echo "$found"
      return 0
    fi
    sleep 0.5
  done
  die "the floating address $vip has holders '${found//$'\n'/ }' after 60 s"
}

stop_keepalived() {  # stop_keepalived NODE: a clean stop, which hands the address over at once
  local pidfile=$run/$1/keepalived/keepalived.pid pid
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
}

# Move the address to NODE by VRRP's own means: every other keepalived stops cleanly (the
# holder's sends priority 0, so the address moves at once) and starts again as BACKUP.
move_address_to() {  # move_address_to NODE
  local i
  for i in $(seq 1 "$nodes"); do
    [[ n$i == "$1" ]] || stop_keepalived "n$i"
  done
  [[ $(wait_holder) == "$1" ]] || die "the address did not move to $1"
  for i in $(seq 1 "$nodes"); do
    [[ n$i == "$1" ]] || start_keepalived "n$i"
  done
}
