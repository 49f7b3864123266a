"""A three-engine Swarm on this host: a worker lost under load, its return, a rolling update.

The four steps of docs/beyond-one-machine.md ("Three nodes"), in order, on one cluster that
scripts/cluster.sh makes for this module and removes afterwards, also on failure: every task
on every node answers; a worker is lost abruptly (its cable cut, every process SIGKILLed)
under steady traffic; it comes back and a rebalance spreads the tasks again; a rolling update
across the nodes. Each step prints sent / failed / longest gap, and the module ends with a
table and a chart (artifacts/cluster/) of which task ran where. Needs root: run it alone with
`make cluster-test` (pytest -m cluster).
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import docker
import pytest
from cluster_timeline import Timeline, draw, placement_table
from conftest import IN_CI, ROOT, check_swarm_tasks

from balance_check.traffic import SteadyTraffic

pytestmark = pytest.mark.cluster

# The title of the lines the shared `report` fixture (conftest.py) prints at the end.
REPORT_TITLE = "three-node cluster, nginx on the manager"
REPLICAS = 5
NODES = ("gwc-n1", "gwc-n2", "gwc-n3")
ARTIFACTS = ROOT / "artifacts/cluster"
CLUSTER_SH = ROOT / "scripts/cluster.sh"
HOST_STATE_SH = ROOT / "scripts/host-state.sh"
# The stack's nginx settings (docker-compose.yml defaults), from which the bound is derived.
NGINX_RESOLVE_SECONDS = 2
NGINX_FAIL_TIMEOUT = 5


@dataclass
class Cluster:
    """The running cluster: the manager's engine, nginx's URL, the stack's app service."""

    client: docker.DockerClient
    url: str
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

    def docker_cli(self, *args, timeout=600):
        """The docker CLI against the manager (service update waits with --detach=false)."""
        return subprocess.run(
            ["docker", "-H", self.env["CLUSTER_DOCKER_HOST"], *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


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
    missing = [
        t for t in ("ip", "nsenter", "unshare", "dockerd", "fuse-overlayfs") if not shutil.which(t)
    ]
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
    client = None
    try:
        up = subprocess.run([CLUSTER_SH, "up"], env=env, cwd=ROOT, timeout=900, check=False)
        assert up.returncode == 0, "scripts/cluster.sh up failed (it removed what it made)"
        info = subprocess.run(
            [CLUSTER_SH, "info"], env=env, capture_output=True, text=True, check=True
        ).stdout
        env.update(line.split("=", 1) for line in info.splitlines() if "=" in line)
        report(f"cluster up (engines, images, swarm, stack): {time.monotonic() - began:.0f} s")
        figures["cluster_up_seconds"] = round(time.monotonic() - began, 1)
        client = docker.DockerClient(base_url=env["CLUSTER_DOCKER_HOST"], timeout=60)
        timeline = Timeline(client, f"{name}_app").start()
        yield Cluster(client, env["CLUSTER_URL"], f"{name}_app", env, timeline)
        timeline.stop()
    finally:
        if request.session.testsfailed:
            subprocess.run([CLUSTER_SH, "status"], env=env, cwd=ROOT, check=False)
            subprocess.run(
                [
                    "docker",
                    "-H",
                    env.get("CLUSTER_DOCKER_HOST", ""),
                    "service",
                    "logs",
                    "--tail=20",
                    f"{name}_nginx",
                ],
                check=False,
            )
        if client is not None:
            client.close()
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


def running_tasks(cluster):
    """Swarm's running app tasks: hostname (container id) -> (node, overlay IP)."""
    tasks = {}
    for task in cluster.client.api.tasks(filters={"service": cluster.app}):
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


def tried(outcome, addresses):
    """True when nginx tried one of `addresses` for this request (X-Upstream-Addr lists each)."""
    return any(f"{address}:" in outcome.upstream for address in addresses)


def step_line(step, traffic):
    slowest = max(outcome.finished - outcome.started for outcome in traffic.outcomes)
    return f"{traffic.summary(step)} slowest={slowest:.2f}s"


def tasks_per_node(tasks):
    return {node: sum(1 for n, _ in tasks.values() if n == node) for node in NODES}


def service_update_under_load(cluster, what, *options):
    """`docker service update OPTIONS app` under steady traffic: (traffic, result, seconds)."""
    with SteadyTraffic(f"{cluster.url}/info", clients=6) as traffic:
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
        "longest_gap": round(traffic.longest_gap(), 2),
        "placement": timeline.placement(),
    }


def test_every_task_on_every_node_answers(cluster, report, figures):
    tasks = running_tasks(cluster)
    nodes = sorted({node for node, _ in tasks.values()})
    cluster.timeline.event("deployed")
    assert len(tasks) == REPLICAS, f"Swarm runs {tasks}"
    assert nodes == list(NODES), f"the tasks run on {nodes} only: {tasks}"

    # The project's balance checker, as for the single-node Swarm, against the tasks Swarm
    # reports: each answer names its container (hostname) and its overlay address.
    result = check_swarm_tasks(f"{cluster.url}/info", requests_total=40 * REPLICAS)
    shares = {name.split(" ")[0]: count for name, count in result.counts.items()}
    report(
        "1. every task answers: "
        + ", ".join(
            f"{tasks[h][0]}/{h[:6]}={shares.get(h, 0)}" for h in sorted(tasks, key=tasks.get)
        )
        + f" (sent={result.requests} failed={result.failed})"
    )
    figures["step1"] = {"sent": result.requests, "failed": result.failed, "answers": result.counts}
    assert result.failed == 0, result.errors
    for name in result.counts:
        hostname, ip = name.split(" ")
        assert tasks.get(hostname, (None, None))[1] == ip, f"{hostname}/{ip} is not a running task"
    assert set(shares) == set(tasks), f"silent tasks: {set(tasks) - set(shares)}"


def test_a_worker_lost_under_load_fails_only_requests_in_flight_on_it(cluster, report, figures):
    before = running_tasks(cluster)
    # The worker holding the most tasks: the worst loss the spread allows.
    per_node = {node: [h for h, (n, _) in before.items() if n == node] for node in NODES[1:]}
    victim = max(per_node, key=lambda node: len(per_node[node]))
    lost = {before[h][1] for h in per_node[victim]}
    assert lost, f"no task on any worker: {before}"
    timeline = cluster.timeline
    placement_before = timeline.placement()

    with SteadyTraffic(f"{cluster.url}/info", clients=6) as traffic:
        traffic.run_for(5)
        lost_at = time.monotonic()
        timeline.event(f"{victim} lost")
        cluster.run("lose", victim.removeprefix("gwc-"))

        node_id = next(
            n.id
            for n in cluster.client.nodes.list()
            if n.attrs["Description"]["Hostname"] == victim
        )
        _, down_after = wait_for(
            lambda: cluster.client.nodes.get(node_id).attrs["Status"]["State"] == "down",
            120,
            f"{victim} marked Down",
        )
        timeline.event(f"{victim} Down")

        def rescheduled():
            tasks = running_tasks(cluster)
            on_victim = [h for h, (node, _) in tasks.items() if node == victim]
            return tasks if len(tasks) == REPLICAS and not on_victim else None

        def replacements_created():
            return [
                task
                for task in cluster.client.api.tasks(filters={"service": cluster.app})
                if task["DesiredState"] == "running"
                and task["NodeID"] != node_id
                and task["Status"].get("ContainerStatus", {}).get("ContainerID", "")[:12]
                not in before
            ]

        wait_for(replacements_created, 120, "replacement tasks on the other nodes")
        replaced_after = time.monotonic() - lost_at
        timeline.event("replacements")
        after, _ = wait_for(rescheduled, 180, "the lost tasks running elsewhere")
        rescheduled_after = time.monotonic() - lost_at
        timeline.event("rescheduled")
        new = {address for hostname, (_, address) in after.items() if hostname not in before}
        placement_after = timeline.placement()

        def new_tasks_serve():
            served = {
                o.upstream.split(", ")[-1].rsplit(":", 1)[0] for o in traffic.outcomes if o.ok
            }
            return new <= served

        _, _ = wait_for(new_tasks_serve, 120, "nginx sending to the new tasks")
        serving_after = time.monotonic() - lost_at
        timeline.event("new tasks serve")
        # Long enough for Swarm's DNS to drop the lost addresses (gossip, 5-7.5 s after the
        # loss) and nginx to re-resolve: then no request may try them any more.
        traffic.run_for(max(0.0, 20 - (time.monotonic() - lost_at)) + NGINX_RESOLVE_SECONDS + 5)
    timeline.add_traffic(traffic)

    # Requests answered after the loss that nginx had first tried on a lost task.
    touched = [o for o in traffic.outcomes if o.finished > lost_at and tried(o, lost)]
    last_try = max((o.started - lost_at for o in touched), default=0.0)
    report(
        f"2. {victim} lost ({len(lost)} tasks): {step_line('under load', traffic)}; "
        f"Down after {down_after:.1f}s, replacements created after {replaced_after:.1f}s, "
        f"running (healthy) after {rescheduled_after:.1f}s, "
        f"new tasks serving after {serving_after:.1f}s; {len(touched)} requests met a lost "
        f"task and were retried elsewhere, the last one sent {last_try:.1f}s after the loss"
    )
    figures["step2"] = {
        "victim": victim,
        "lost_tasks": len(lost),
        "sent": len(traffic.outcomes),
        "failed": len(traffic.failures),
        "failures": [o.error or o.status for o in traffic.failures],
        "longest_gap": round(traffic.longest_gap(), 2),
        "slowest": round(max(o.finished - o.started for o in traffic.outcomes), 2),
        "down_after": round(down_after, 1),
        "replacements_created_after": round(replaced_after, 1),
        "rescheduled_after": round(rescheduled_after, 1),
        "new_tasks_serving_after": round(serving_after, 1),
        "retried_after_meeting_lost_task": len(touched),
        "last_try_of_lost_address_after": round(last_try, 1),
        "placement_before": placement_before,
        "placement_after": placement_after,
    }
    # The bound (docs/beyond-one-machine.md): a request sent after the loss never fails; one
    # in flight on the lost node at that instant may, if its answer had begun (nginx passed
    # the headers on, the body went down with the node) or it had waited over 1 s already.
    late = [o for o in traffic.failures if not o.started < lost_at < o.finished]
    assert late == [], f"requests not in flight at the loss failed: {late[:3]}"
    assert len(traffic.failures) <= traffic.clients, "more failures than requests in flight"
    assert last_try < traffic.ended - lost_at - 5, "nginx still tries the lost addresses"


def test_the_worker_comes_back_and_a_rebalance_spreads_the_tasks(cluster, report, figures):
    victim = figures["step2"]["victim"]
    timeline = cluster.timeline
    began = time.monotonic()
    restored = cluster.run("restore", victim.removeprefix("gwc-"))
    back_after = time.monotonic() - began
    for line in restored.splitlines():
        report(f"   {line}")
    timeline.event(f"{victim} back")
    # --force replaces every task, one at a time (start-first); the scheduler puts each
    # new one on the node with the fewest of the service's tasks: the empty node first.
    traffic, update, rebalance_seconds = service_update_under_load(cluster, "rebalance", "--force")
    tasks = running_tasks(cluster)
    spread = tasks_per_node(tasks)
    report(
        f"3. {victim} back and Ready after {back_after:.1f}s; rebalance {rebalance_seconds:.0f}s: "
        f"{step_line('under load', traffic)}; tasks per node {spread}"
    )
    figures["step3"] = traffic_figures(
        traffic,
        timeline,
        back_after=round(back_after, 1),
        rebalance_seconds=round(rebalance_seconds, 1),
    )
    assert update.returncode == 0, update.stderr
    assert len(tasks) == REPLICAS and all(spread.values()), f"not spread over every node: {spread}"
    assert traffic.failures == [], [o.error or o.status for o in traffic.failures][:5]


def test_a_rolling_update_across_the_nodes_loses_nothing(cluster, report, figures):
    timeline = cluster.timeline
    before = running_tasks(cluster)
    message = f"rolled-{uuid.uuid4().hex[:6]}"
    # A new spec (as a new version would be): every task replaced, one node after another.
    traffic, update, update_seconds = service_update_under_load(
        cluster, "update", "--env-add", f"GATEWAY_MESSAGE={message}"
    )
    after = running_tasks(cluster)
    spread = tasks_per_node(after)
    report(
        f"4. rolling update {update_seconds:.0f}s: {step_line('under load', traffic)}; "
        f"tasks per node {spread}"
    )
    figures["step4"] = traffic_figures(traffic, timeline, update_seconds=round(update_seconds, 1))
    assert update.returncode == 0, update.stderr
    assert len(after) == REPLICAS and not set(after) & set(before), "not every task was replaced"
    assert all(spread.values()), f"not spread over every node: {spread}"
    assert traffic.failures == [], [o.error or o.status for o in traffic.failures][:5]


def test_where_each_task_ran(cluster, report, figures):
    """Not a check: the table and the chart of the run (artifacts/cluster/)."""
    cluster.timeline.stop()
    columns = {
        "before the loss": figures.get("step2", {}).get("placement_before"),
        "after the loss": figures.get("step2", {}).get("placement_after"),
        "after the rebalance": figures.get("step3", {}).get("placement"),
        "after the update": figures.get("step4", {}).get("placement"),
    }
    table = placement_table(columns, NODES)
    report("which task ran where (task slots per node):")
    for line in table.splitlines():
        report(f"  {line}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "placement.txt").write_text(table + "\n")
    victim = figures.get("step2", {}).get("victim", "a worker")
    draw(
        cluster.timeline,
        NODES,
        ARTIFACTS / "timeline.png",
        f"Three-node Swarm, {REPLICAS} app tasks: {victim} lost under load, back, rebalanced,"
        " updated",
    )
    report(f"chart: {(ARTIFACTS / 'timeline.png').relative_to(ROOT)}")
