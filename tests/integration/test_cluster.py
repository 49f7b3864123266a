"""Three managers, nginx on every node, one floating address: lose any machine under load.

The six steps of docs/beyond-one-machine.md ("Three nodes"), in order, on one cluster that
scripts/cluster.sh makes for this module and removes afterwards, also on failure, with
steady traffic to the floating address that keepalived moves: every task on every node
answers; the node that holds the address and leads Raft is lost abruptly (its cable cut,
every process SIGKILLed); it comes back without taking the address back; a node that does
not hold it is lost; a rolling update while that manager is down; nginx alone killed on the
holder. Each step prints its figures, and the module ends with a table and a chart
(artifacts/cluster/) of where the tasks ran, who held the address and who led. Needs root:
run it alone with `make cluster-test` (pytest -m cluster).
"""

import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import docker
import pytest
from cluster_swarm import Managers
from cluster_timeline import Timeline, draw, placement_table
from conftest import IN_CI, ROOT, check_swarm_tasks

from balance_check.traffic import SteadyTraffic

pytestmark = [
    pytest.mark.cluster,
    # An engine killed in the middle of a docker SDK call leaves the SDK's unix socket to
    # the garbage collector (Managers probes before it calls, but a loss can come between).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

# The title of the lines the shared `report` fixture (conftest.py) prints at the end.
REPORT_TITLE = "three managers, nginx on every node, one floating address"
REPLICAS = 5
NODES = ("gwc-n1", "gwc-n2", "gwc-n3")
CLIENTS = 6
ARTIFACTS = ROOT / "artifacts/cluster"
CLUSTER_SH = ROOT / "scripts/cluster.sh"
HOST_STATE_SH = ROOT / "scripts/host-state.sh"
# The stack's nginx settings (docker-compose.yml defaults), from which the bound is derived.
NGINX_RESOLVE_SECONDS = 2


def address_holders(vip):
    """The nodes with the floating address on eth0 whose cable is plugged in."""
    found = []
    for node in NODES:
        addresses = subprocess.run(
            ["ip", "-n", node, "-4", "-o", "addr", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        cable = subprocess.run(
            ["ip", "-n", "gwc-sw", "-o", "link", "show", f"{node}-p"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if f" {vip}/" in addresses and ",UP" in cable.split(">")[0]:
            found.append(node)
    return found


@dataclass
class Cluster:
    """The running cluster: its managers, the floating URL, the stack's app service."""

    managers: Managers
    url: str
    vip: str
    app: str
    env: dict
    timeline: Timeline

    def run(self, *args, timeout=600):
        """scripts/cluster.sh ARGS with the cluster's environment; fails the test on error."""
        result = subprocess.run(
            [CLUSTER_SH, *args],
            env=self.env,
            cwd=ROOT,
            timeout=timeout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"cluster.sh {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout.strip()

    def socket(self, node):
        return self.env[f"CLUSTER_NODE_{node.removeprefix('gwc-')}"].split()[2]

    def docker_cli(self, *args, timeout=600):
        """The docker CLI against a manager that answers (service update waits, --detach=false)."""
        node = self.managers.call(lambda client: client.info()["Name"])
        return subprocess.run(
            ["docker", "-H", self.socket(node), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def holder(self):
        """The node holding the floating address, or None while not exactly one does (two
        backups of equal priority may both take over for an instant, then VRRP keeps the
        one with the higher address)."""
        holders = address_holders(self.vip)
        return holders[0] if len(holders) == 1 else None

    def node_id(self, hostname):
        return next(
            node["ID"]
            for node in self.managers.nodes()
            if node["Description"]["Hostname"] == hostname
        )

    def node_state(self, hostname):
        node = next(n for n in self.managers.nodes() if n["Description"]["Hostname"] == hostname)
        return node["Status"]["State"], node.get("ManagerStatus", {}).get("Reachability")


def cannot_run(why):
    """A cluster test that cannot run fails under CI=true, and is skipped elsewhere."""
    if IN_CI:
        pytest.fail(f"CI=true but the cluster test cannot run: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def figures():
    """The figures of every step, written to artifacts/cluster/figures.json at the end."""
    collected = {}
    yield collected
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(collected, indent=2) + "\n")


@pytest.fixture(scope="module")
def cluster(request, docker_client, tmp_path_factory, report, figures):
    """scripts/cluster.sh up with a stack of its own; down afterwards, host state compared."""
    if os.geteuid() != 0:
        cannot_run("it needs root: network namespaces (ip netns), nsenter and dockerds of its own")
    tools = ("ip", "nsenter", "unshare", "dockerd", "fuse-overlayfs", "keepalived")
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        cannot_run(f"missing {', '.join(missing)} (make cluster-tools installs them)")

    name = f"gatewaycluster{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "STACK": name,
        "APP_IMAGE": f"{name}-app",
        "APP_VERSION": "test",
        "COMPOSE_PROJECT_NAME": name,
        "PYTHON": sys.executable,
        # All test traffic comes from one address: lift the per-client limits.
        "RATE_LIMIT_PER_SECOND": "100000",
        "RATE_LIMIT_BURST": "100000",
        "CONNECTIONS_PER_CLIENT": "4096",
    }
    states = tmp_path_factory.mktemp("host-state")
    subprocess.run([HOST_STATE_SH, "save", states / "before"], check=True)
    host_swarm_before = docker_client.info()["Swarm"]
    began = time.monotonic()
    managers = None
    try:
        up = subprocess.run([CLUSTER_SH, "up"], env=env, cwd=ROOT, timeout=900, check=False)
        assert up.returncode == 0, "scripts/cluster.sh up failed (it removed what it made)"
        info = subprocess.run(
            [CLUSTER_SH, "info"], env=env, capture_output=True, text=True, check=True
        ).stdout
        env.update(line.split("=", 1) for line in info.splitlines() if "=" in line)
        up_seconds = time.monotonic() - began
        report(f"cluster up (engines, images, swarm, stack, keepalived): {up_seconds:.0f} s")
        figures["cluster_up_seconds"] = round(time.monotonic() - began, 1)
        managers = Managers({node: env[f"CLUSTER_NODE_{node[4:]}"].split()[2] for node in NODES})
        vip = env["CLUSTER_VIP"]

        def holder():
            holders = address_holders(vip)
            return "+".join(holders) if holders else None

        timeline = Timeline(managers, f"{name}_app", holder).start()
        yield Cluster(managers, env["CLUSTER_URL"], vip, f"{name}_app", env, timeline)
        timeline.stop()
    finally:
        if request.session.testsfailed:
            subprocess.run([CLUSTER_SH, "status"], env=env, cwd=ROOT, check=False)
        if managers is not None:
            managers.close()
        down_began = time.monotonic()
        down = subprocess.run([CLUSTER_SH, "down"], env=env, cwd=ROOT, timeout=300, check=False)
        figures["cluster_down_seconds"] = round(time.monotonic() - down_began, 1)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(f"{name}-app:test")
        subprocess.run([HOST_STATE_SH, "save", states / "after"], check=True)
        compared = subprocess.run(
            [HOST_STATE_SH, "compare", states / "before", states / "after"],
            capture_output=True,
            text=True,
            check=False,
        )
        report(f"cluster down: {figures['cluster_down_seconds']:.0f} s; host state before/after:")
        for line in compared.stdout.splitlines():
            report(f"  {line}")
        assert down.returncode == 0, "scripts/cluster.sh down left something behind"
        # Others' Compose tests change the host engine's networks meanwhile, and `make
        # swarm-test` its swarm: assert what only the cluster could have changed.
        assert "no trace of the cluster" in compared.stdout, compared.stdout
        before, after = ((states / when / "netns").read_text() for when in ("before", "after"))
        assert before == after, f"network namespaces differ:\n{before}\n{after}"
        node_after = docker_client.info()["Swarm"].get("NodeID")
        assert node_after in ("", host_swarm_before.get("NodeID")), (
            "the host engine's swarm changed"
        )


def running_tasks(cluster, service=None):
    """Swarm's running tasks: hostname (container id) -> (node, overlay IP)."""
    tasks = {}
    for task in cluster.managers.tasks(service or cluster.app):
        if task["Status"]["State"] != "running" or task["DesiredState"] != "running":
            continue
        hostname = task["Status"]["ContainerStatus"]["ContainerID"][:12]
        address = task["NetworksAttachments"][0]["Addresses"][0].split("/")[0]
        tasks[hostname] = (cluster.timeline.node_name(task["NodeID"]), address)
    return tasks


def wait_for(condition, timeout, what):
    """Poll `condition` until it returns something true; return that and the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        value = condition()
        if value:
            return value, time.monotonic() - began
        time.sleep(0.25)
    pytest.fail(f"{what}: not after {timeout} s")


def step_line(step, traffic):
    slowest = max(outcome.finished - outcome.started for outcome in traffic.outcomes)
    return f"{traffic.summary(step)} slowest={slowest:.2f}s"


def tasks_per_node(tasks):
    return {node: sum(1 for n, _ in tasks.values() if n == node) for node in NODES}


def service_update_under_load(cluster, what, *options):
    """`docker service update OPTIONS app` under steady traffic: (traffic, result, seconds)."""
    with SteadyTraffic(cluster.url + "/info", clients=CLIENTS) as traffic:
        traffic.run_for(2)
        cluster.timeline.event(f"{what} starts")
        began = time.monotonic()
        update = cluster.docker_cli(
            "service", "update", *options, "--detach=false", "--quiet", cluster.app
        )
        seconds = time.monotonic() - began
        traffic.run_for(3)
    cluster.timeline.add_traffic(traffic)
    cluster.timeline.event(f"{what} done")
    return traffic, update, seconds


def traffic_figures(traffic, timeline, **step):
    """A step's own figures, and what its traffic saw, for figures.json."""
    return {
        **step,
        "sent": len(traffic.outcomes),
        "failed": len(traffic.failures),
        "failures": [o.error or o.status for o in traffic.failures][:20],
        "longest_gap": round(traffic.longest_gap(), 2),
        "slowest": round(max(o.finished - o.started for o in traffic.outcomes), 2),
        "placement": timeline.placement(),
    }


def test_every_task_on_every_node_answers_through_the_floating_address(cluster, report, figures):
    tasks = running_tasks(cluster)
    edges = running_tasks(cluster, cluster.app.removesuffix("_app") + "_nginx")
    nodes = sorted({node for node, _ in tasks.values()})
    cluster.timeline.event("deployed")
    assert len(tasks) == REPLICAS, f"Swarm runs {tasks}"
    assert nodes == list(NODES), f"the tasks run on {nodes} only: {tasks}"
    assert sorted(node for node, _ in edges.values()) == list(NODES), f"nginx runs {edges}"
    holder = cluster.holder()
    assert holder, f"no node holds {cluster.vip}"

    # The project's balance checker through the floating address, against the tasks Swarm
    # reports: each answer names its container (hostname) and its overlay address.
    result = check_swarm_tasks(f"{cluster.url}/info", requests_total=40 * REPLICAS)
    shares = {name.split(" ")[0]: count for name, count in result.counts.items()}
    report(
        f"1. every task answers through {cluster.vip} (held by {holder}, leader "
        f"{cluster.managers.leader()}): "
        + ", ".join(
            f"{tasks[h][0]}/{h[:6]}={shares.get(h, 0)}" for h in sorted(tasks, key=tasks.get)
        )
        + f" (sent={result.requests} failed={result.failed})"
    )
    figures["step1"] = {
        "holder": holder,
        "sent": result.requests,
        "failed": result.failed,
        "answers": result.counts,
    }
    assert result.failed == 0, result.errors
    for name in result.counts:
        hostname, ip = name.split(" ")
        assert tasks.get(hostname, (None, None))[1] == ip, f"{hostname}/{ip} is not a running task"
    assert set(shares) == set(tasks), f"silent tasks: {set(tasks) - set(shares)}"


def cut_instant(run, *args):
    """run(*args), a `cluster.sh lose`; the monotonic time at which it cut the cable (it
    prints the Unix time: it cuts first, then takes seconds to find the node's processes)."""
    wall, began = time.time(), time.monotonic()
    said = run(*args)
    return began + float(re.search(r"cable cut at ([0-9.]+)", said)[1]) - wall


def lose_under_load(cluster, victim, traffic):
    """Lose `victim` under `traffic`; wait for Swarm to make up for it. Returns the times."""
    before = running_tasks(cluster)
    timeline = cluster.timeline
    node_id = cluster.node_id(victim)
    began = time.monotonic()

    def moved():
        holder = cluster.holder()
        return holder if holder and holder != victim else None

    # `lose` cuts the cable first, then finds and kills the node's processes (seconds on a
    # loaded host): the address is watched meanwhile.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        losing = pool.submit(cut_instant, cluster.run, "lose", victim.removeprefix("gwc-"))
        holder, _ = wait_for(moved, 60, f"{cluster.vip} held by a node other than {victim}")
        moved_at = time.monotonic()
        lost_at = losing.result()
    timeline.event(f"{victim} lost", at=lost_at)
    times = {"lose_seconds": time.monotonic() - began}
    times["address_holder"] = holder
    times["address_moved_after"] = moved_at - lost_at
    timeline.event(f"address on {holder}", at=moved_at)

    def new_leader():
        leader = cluster.managers.leader()
        return leader if leader and leader != victim else None

    leader, _ = wait_for(new_leader, 120, "a leader other than the lost node")
    times["leader"] = leader
    times["leader_after"] = time.monotonic() - lost_at

    wait_for(lambda: cluster.node_state(victim)[0] == "down", 180, f"{victim} marked Down")
    times["down_after"] = time.monotonic() - lost_at
    timeline.event(f"{victim} Down")

    def rescheduled():
        tasks = running_tasks(cluster)
        on_victim = [h for h, (node, _) in tasks.items() if node == victim]
        return tasks if len(tasks) == REPLICAS and not on_victim else None

    # Running is healthy: a task with a healthcheck stays "starting" until its check passes.
    after, _ = wait_for(rescheduled, 240, "the lost tasks running (healthy) elsewhere")
    times["healthy_elsewhere_after"] = time.monotonic() - lost_at
    timeline.event("rescheduled")
    new = {address for hostname, (_, address) in after.items() if hostname not in before}

    def full_capacity():
        served = {o.tried[-1].rsplit(":", 1)[0] for o in traffic.outcomes if o.ok and o.tried}
        return new <= served

    wait_for(full_capacity, 120, "nginx sending to the new tasks")
    times["full_capacity_after"] = time.monotonic() - lost_at
    timeline.event("full capacity")
    times["lost_tasks"] = sum(1 for node, _ in before.values() if node == victim)
    times["node_id"] = node_id
    return lost_at, times


def times_line(times):
    return (
        f"address on {times['address_holder']} after {times['address_moved_after']:.1f}s, "
        f"leader {times['leader']} after {times['leader_after']:.1f}s, "
        f"Down after {times['down_after']:.1f}s, {times['lost_tasks']} lost tasks healthy "
        f"elsewhere after {times['healthy_elsewhere_after']:.1f}s, full capacity after "
        f"{times['full_capacity_after']:.1f}s"
    )


def test_losing_the_address_holder_and_raft_leader_fails_only_requests_in_flight(
    cluster, report, figures
):
    # Arrange that one node is both: n1 made the swarm (leader) and started keepalived first
    # (holder); if an election or a failover has parted them since, hand the address to the
    # leader by keepalived's own means (the others restarted: a clean stop gives it up).
    leader, holder = cluster.managers.leader(), cluster.holder()
    arranged = "already both"
    if leader != holder:
        cluster.run("move-address", leader.removeprefix("gwc-"))
        arranged = f"address moved from {holder} to the leader"
        holder = cluster.holder()
    assert holder == leader, f"holder {holder}, leader {leader}"
    victim = holder
    placement_before = cluster.timeline.placement()

    with SteadyTraffic(cluster.url + "/info", clients=CLIENTS) as traffic:
        traffic.run_for(5)
        lost_at, times = lose_under_load(cluster, victim, traffic)
        moved_at = lost_at + times["address_moved_after"]
        # Long enough for Swarm's DNS to drop the lost addresses and nginx to re-resolve.
        traffic.run_for(NGINX_RESOLVE_SECONDS + 5)
    cluster.timeline.add_traffic(traffic)

    in_flight = [o for o in traffic.outcomes if o.started < lost_at < o.finished]
    report(
        f"2. {victim} (holder and leader; {arranged}) lost: {step_line('under load', traffic)}; "
        f"{times_line(times)}; {len(in_flight)} requests in flight at the cut"
    )
    figures["step2"] = traffic_figures(
        traffic,
        cluster.timeline,
        victim=victim,
        arranged=arranged,
        placement_before=placement_before,
        in_flight_at_loss=len(in_flight),
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in times.items()},
    )
    # The bound: only requests in flight through the lost node at the instant of the loss
    # may fail (their connection died with it): at most one per client. A request sent
    # after the loss waits for its SYN to be answered by the new holder.
    assert len(traffic.failures) <= len(in_flight) <= CLIENTS
    late = [o for o in traffic.failures if o.started >= lost_at]
    assert late == [], f"requests sent after the loss failed: {late[:3]}"
    after_move = [o for o in traffic.outcomes if o.started > moved_at]
    assert after_move and all(o.ok for o in after_move), "a request after the move failed"


def test_the_node_comes_back_as_a_manager_and_leaves_the_address_where_it_is(
    cluster, report, figures
):
    victim = figures["step2"]["victim"]
    holder = cluster.holder()
    timeline = cluster.timeline
    began = time.monotonic()
    restore_began = timeline.event(f"{victim} back")
    restored = cluster.run("restore", victim.removeprefix("gwc-"))
    back_after = time.monotonic() - began
    for line in restored.splitlines():
        report(f"   {line}")
    state, reachability = wait_for(
        lambda: (s := cluster.node_state(victim))[1] == "reachable" and s,
        120,
        f"{victim} a reachable manager",
    )[0]
    traffic, update, rebalance_seconds = service_update_under_load(cluster, "rebalance", "--force")
    tasks = running_tasks(cluster)
    spread = tasks_per_node(tasks)
    # Every node's `ip addr`, polled since the restore began: never two holders, never the
    # returning node (its leftover address is removed before its cable is back).
    holders_since = {h for at, h, _ in timeline.roles if at >= restore_began}
    report(
        f"3. {victim} back and Ready after {back_after:.1f}s, manager {reachability}; address "
        f"stays on {cluster.holder()} (holders seen since: {sorted(map(str, holders_since))}); "
        f"rebalance {rebalance_seconds:.0f}s: {step_line('under load', traffic)}; "
        f"tasks per node {spread}"
    )
    figures["step3"] = traffic_figures(
        traffic,
        timeline,
        back_after=round(back_after, 1),
        rebalance_seconds=round(rebalance_seconds, 1),
        holders_since_restore=sorted(map(str, holders_since)),
    )
    assert state == "ready"
    assert holders_since == {holder}, f"the address moved or doubled: {holders_since}"
    assert cluster.holder() == holder
    assert update.returncode == 0, update.stderr
    assert len(tasks) == REPLICAS and all(spread.values()), f"not spread over every node: {spread}"
    assert traffic.failures == [], [o.error or o.status for o in traffic.failures][:5]


def test_losing_a_node_that_does_not_hold_the_address_fails_only_answers_it_had_begun(
    cluster, report, figures
):
    holder = cluster.holder()
    per_node = tasks_per_node(running_tasks(cluster))
    # The non-holder with the most tasks: the worst loss the spread allows.
    victim = max((n for n in NODES if n != holder), key=per_node.get)
    with SteadyTraffic(cluster.url + "/info", clients=CLIENTS) as traffic:
        traffic.run_for(5)
        lost_at = cut_instant(cluster.run, "lose", victim.removeprefix("gwc-"))
        cluster.timeline.event(f"{victim} lost", at=lost_at)
        leader, _ = wait_for(
            lambda: (lead := cluster.managers.leader()) and lead != victim and lead,
            120,
            "a leader among the nodes left",
        )
        wait_for(lambda: cluster.node_state(victim)[0] == "down", 180, f"{victim} marked Down")
        down_after = time.monotonic() - lost_at
        wait_for(
            lambda: (
                len(running_tasks(cluster)) == REPLICAS
                and victim not in {n for n, _ in running_tasks(cluster).values()}
            ),
            240,
            "the lost tasks running elsewhere",
        )
        healthy_after = time.monotonic() - lost_at
        cluster.timeline.event("rescheduled")
        traffic.run_for(NGINX_RESOLVE_SECONDS + 5)
    cluster.timeline.add_traffic(traffic)
    report(
        f"4. {victim} ({per_node[victim]} tasks, not the holder) lost: "
        f"{step_line('under load', traffic)}; address stays on {cluster.holder()}, leader "
        f"{leader}, Down after {down_after:.1f}s, tasks healthy elsewhere after "
        f"{healthy_after:.1f}s"
    )
    figures["step4"] = traffic_figures(
        traffic,
        cluster.timeline,
        victim=victim,
        down_after=round(down_after, 1),
        healthy_elsewhere_after=round(healthy_after, 1),
    )
    assert cluster.holder() == holder
    # nginx retries every request that meets a lost task on a live one, unless its answer
    # had begun (headers passed on, the body lost with the node): only a request in flight
    # on the lost node's tasks at the cut can fail, at most one per client.
    late = [o for o in traffic.failures if not o.started < lost_at < o.finished]
    assert late == [], f"requests not in flight at the loss failed: {late[:3]}"
    assert len(traffic.failures) <= CLIENTS


def test_a_rolling_update_while_a_manager_is_down_loses_nothing(cluster, report, figures):
    victim = figures["step4"]["victim"]
    assert cluster.node_state(victim)[0] == "down", "step 4 left no manager down"
    before = running_tasks(cluster)
    message = f"rolled-{uuid.uuid4().hex[:6]}"
    # A new spec (as a new version would be): every task replaced, with two managers of three.
    traffic, update, update_seconds = service_update_under_load(
        cluster, "update", "--env-add", f"GATEWAY_MESSAGE={message}"
    )
    after = running_tasks(cluster)
    spread = tasks_per_node(after)
    report(
        f"5. rolling update with {victim} down {update_seconds:.0f}s: "
        f"{step_line('under load', traffic)}; tasks per node {spread}"
    )
    figures["step5"] = traffic_figures(
        traffic, cluster.timeline, update_seconds=round(update_seconds, 1)
    )
    assert update.returncode == 0, update.stderr
    assert len(after) == REPLICAS and not set(after) & set(before), "not every task was replaced"
    assert traffic.failures == [], [o.error or o.status for o in traffic.failures][:5]
    # Back for the next step, which needs a node to move the address to.
    cluster.run("restore", victim.removeprefix("gwc-"))
    cluster.timeline.event(f"{victim} back")


def test_nginx_killed_on_the_holder_moves_the_address_within_seconds(cluster, report, figures):
    holder = cluster.holder()
    edge = docker.DockerClient(base_url=cluster.socket(holder), timeout=30)
    stack = cluster.app.removesuffix("_app")
    (nginx,) = edge.containers.list(
        filters={"label": f"com.docker.swarm.service.name={stack}_nginx"}
    )
    # A rate per client: while the holder's nginx is gone, its port refuses at once, and
    # back-to-back clients would count thousands of refusals a second.
    with SteadyTraffic(cluster.url + "/info", clients=CLIENTS, rate=25) as traffic:
        traffic.run_for(5)
        killed_at = time.monotonic()
        cluster.timeline.event(f"nginx on {holder} killed")
        nginx.kill()

        def moved():
            now = cluster.holder()
            return now if now and now != holder else None

        new_holder, moved_after = wait_for(moved, 60, f"{cluster.vip} off {holder}")
        moved_at = time.monotonic()
        cluster.timeline.event(f"address on {new_holder}")

        def restarted():
            running = edge.containers.list(
                filters={"label": f"com.docker.swarm.service.name={stack}_nginx"}
            )
            return running and running[0].id != nginx.id

        wait_for(restarted, 120, f"Swarm restarting nginx on {holder}")
        restarted_after = time.monotonic() - killed_at
        traffic.run_for(5)
    edge.close()
    cluster.timeline.add_traffic(traffic)
    outage = [o for o in traffic.outcomes if killed_at <= o.started < moved_at]
    report(
        f"6. nginx killed on {holder}: {step_line('under load', traffic)}; address on "
        f"{new_holder} after {moved_after:.1f}s; {len(outage)} requests sent meanwhile; "
        f"Swarm restarted nginx on {holder} after {restarted_after:.1f}s"
    )
    figures["step6"] = traffic_figures(
        traffic,
        cluster.timeline,
        holder=holder,
        new_holder=new_holder,
        address_moved_after=round(moved_after, 1),
        sent_before_the_move=len(outage),
        nginx_restarted_after=round(restarted_after, 1),
    )
    # The bound: requests in flight on the killed nginx, and those sent to the holder's
    # refusing port before the address moved. Nothing sent after the move fails.
    bound = [o for o in traffic.outcomes if o.started < moved_at and o.finished >= killed_at]
    assert set(map(id, traffic.failures)) <= set(map(id, bound)), "a failure outside the outage"
    after_move = [o for o in traffic.outcomes if o.started > moved_at]
    assert after_move and all(o.ok for o in after_move), "a request after the move failed"
    assert cluster.holder() == new_holder, "the address went back"


def test_where_each_task_ran(cluster, report, figures):
    """Not a check: the table and the chart of the run (artifacts/cluster/)."""
    cluster.timeline.stop()
    columns = {
        "before the loss": figures.get("step2", {}).get("placement_before"),
        "holder lost": figures.get("step2", {}).get("placement"),
        "rebalanced": figures.get("step3", {}).get("placement"),
        "other lost": figures.get("step4", {}).get("placement"),
        "updated": figures.get("step5", {}).get("placement"),
    }
    table = placement_table(columns, NODES)
    report("which task ran where (task slots per node):")
    for line in table.splitlines():
        report(f"  {line}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "placement.txt").write_text(table + "\n")
    draw(
        cluster.timeline,
        NODES,
        ARTIFACTS / "timeline.png",
        f"Three managers, {REPLICAS} app tasks, one floating address: the holder and leader "
        "lost, back; another node lost; an update; nginx killed on the holder",
    )
    report(f"chart: {(ARTIFACTS / 'timeline.png').relative_to(ROOT)}")
