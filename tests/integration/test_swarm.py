"""The same image and compose file on a single-node Docker Swarm: balance, restarts, updates.

Run alone with `make swarm-test` (pytest -m swarm). The engine is left as it was found:
a swarm made here is left again, also when a test fails.
"""

import collections
import contextlib
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import httpx
import pytest
import requests
from conftest import check_swarm_tasks, free_port

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.swarm

REPLICAS = 5
# Traffic during the rolling update: a few threads, each bounded in count and time.
TRAFFIC_THREADS = 4
TRAFFIC_MAX_PER_THREAD = 20_000
TRAFFIC_PAUSE_SECONDS = 0.01
UPDATE_TIMEOUT_SECONDS = 420


@pytest.fixture(scope="module")
def swarm(docker_client):
    """A single-node swarm: the engine's own if it is in one, else one made here and left after."""
    state = docker_client.info()["Swarm"]["LocalNodeState"]
    if state not in ("inactive", "active"):
        pytest.fail(f"the engine's swarm is {state!r}; neither usable nor safe to change")
    made_here = state == "inactive"
    gwbridge_was_here = bool(docker_client.networks.list(names=["docker_gwbridge"]))
    if made_here:
        docker_client.swarm.init(advertise_addr="127.0.0.1")
    try:
        yield docker_client
    finally:
        if made_here:
            docker_client.swarm.leave(force=True)
            # The swarm's first task made this bridge; it outlives `swarm leave`.
            if not gwbridge_was_here:
                for network in docker_client.networks.list(names=["docker_gwbridge"]):
                    with contextlib.suppress(docker.errors.APIError):
                        network.remove()


@pytest.fixture(scope="module")
def swarm_stack(request, swarm, tmp_path_factory):
    """The stack deployed by scripts/swarm.sh (as `make swarm-up` does) under a name of its own."""
    name = f"gatewayswarm{uuid.uuid4().hex[:8]}"
    port, tls_port = free_port(), free_port()
    certificates = tmp_path_factory.mktemp("swarm-tls")
    env = {
        **os.environ,
        "STACK": name,
        "GATEWAY_PORT": str(port),
        # swarm.sh makes a local CA and certificate here, as make up does in certs/.
        "GATEWAY_TLS_PORT": str(tls_port),
        "TLS_CERT_DIR": str(certificates),
        "APP_IMAGE": f"{name}-app",
        "APP_VERSION": "test",
        "COMPOSE_PROJECT_NAME": name,
        "PYTHON": sys.executable,
    }

    def swarm_sh(command, timeout):
        return subprocess.run(
            [ROOT / "scripts/swarm.sh", command], env=env, cwd=ROOT, timeout=timeout, check=False
        )

    try:
        assert swarm_sh("up", timeout=600).returncode == 0, "scripts/swarm.sh up failed"
        yield {
            "name": name,
            "url": f"http://127.0.0.1:{port}",
            "tls_url": f"https://127.0.0.1:{tls_port}",
            "ca": certificates / "ca.crt",
            "docker": swarm,
        }
    finally:
        if request.session.testsfailed:
            subprocess.run(["docker", "stack", "ps", "--no-trunc", name], check=False)
            subprocess.run(["docker", "service", "logs", "--tail=20", f"{name}_nginx"], check=False)
        swarm_sh("down", timeout=300)
        with contextlib.suppress(docker.errors.ImageNotFound):
            swarm.images.remove(f"{name}-app:test")


def running_tasks(client, service_name):
    """Ask Swarm which tasks of a service run: hostname (container id) -> its IPs."""
    tasks = {}
    for task in client.services.get(service_name).tasks(filters={"desired-state": "running"}):
        if task["Status"]["State"] != "running":
            continue
        container_id = task["Status"]["ContainerStatus"]["ContainerID"]
        addresses = [a for n in task.get("NetworksAttachments", []) for a in n["Addresses"]]
        tasks[container_id[:12]] = {address.split("/")[0] for address in addresses}
    return tasks


def wait_for_running_tasks(client, service_name, count, gone=(), timeout=120):
    """Wait until the service runs `count` tasks, none of them in `gone`; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = running_tasks(client, service_name)
        if len(tasks) == count and not set(tasks) & set(gone):
            return tasks
        time.sleep(1)
    return running_tasks(client, service_name)


def keep_requesting(url, stop, deadline):
    """Request /info until told to stop (bounded in count and time): (sent, failures)."""
    sent, failures = 0, []
    with requests.Session() as http:
        while not stop.is_set() and time.monotonic() < deadline and sent < TRAFFIC_MAX_PER_THREAD:
            sent += 1
            try:
                # Generous: a slow answer on a busy host is not a lost request.
                status = http.get(f"{url}/info", timeout=30).status_code
                if status != 200:
                    failures.append(f"HTTP {status}")
            except requests.RequestException as error:
                failures.append(type(error).__name__)
            time.sleep(TRAFFIC_PAUSE_SECONDS)
    return sent, failures


def test_stack_file_asks_swarm_for_replicas_restarts_and_safe_updates(swarm_stack):
    client, name = swarm_stack["docker"], swarm_stack["name"]
    app = client.services.get(f"{name}_app").attrs["Spec"]
    assert app["Mode"]["Replicated"]["Replicas"] == REPLICAS
    assert app["EndpointSpec"]["Mode"] == "dnsrr"
    assert app["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"
    assert app["UpdateConfig"]["Order"] == "start-first"
    assert app["UpdateConfig"]["FailureAction"] == "rollback"
    assert app["RollbackConfig"]["Order"] == "start-first"
    container = app["TaskTemplate"]["ContainerSpec"]
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    nginx = client.services.get(f"{name}_nginx").attrs["Spec"]
    assert [p["PublishMode"] for p in nginx["EndpointSpec"]["Ports"]] == ["host", "host"]


def test_https_and_http2_reach_a_task(swarm_stack):
    client, name = swarm_stack["docker"], swarm_stack["name"]
    context = ssl.create_default_context(cafile=swarm_stack["ca"])
    with httpx.Client(http2=True, verify=context) as http:
        response = http.get(f"{swarm_stack['tls_url']}/info", timeout=10)
    assert response.http_version == "HTTP/2"
    assert response.json()["hostname"] in running_tasks(client, f"{name}_app")
    # The app builds its URLs with the scheme and port the client used.
    assert response.json()["url"] == f"{swarm_stack['tls_url']}/info"


def test_every_task_answers_through_nginx(swarm_stack):
    client, name = swarm_stack["docker"], swarm_stack["name"]
    tasks = running_tasks(client, f"{name}_app")
    assert len(tasks) == REPLICAS, f"Swarm runs {sorted(tasks)}"

    # The project's balance checker, as a user would run it against the swarm.
    result = check_swarm_tasks(f"{swarm_stack['url']}/info", requests_total=20 * REPLICAS)
    print(f"answers per task: {result.counts}")
    assert result.failed == 0, result.errors
    answered_by = [name.split(" ") for name in result.counts]
    for hostname, ip in answered_by:
        assert ip in tasks.get(hostname, set()), f"{hostname}/{ip} is not a running task"
    assert {hostname for hostname, _ in answered_by} == set(tasks)


def test_swarm_replaces_a_killed_task(swarm_stack):
    client, name = swarm_stack["docker"], swarm_stack["name"]
    victim = next(iter(running_tasks(client, f"{name}_app")))
    # `docker kill` is a stop by hand to the Engine's restart policy, but not to Swarm,
    # which keeps the service at its replica count whatever ended a task.
    client.containers.get(victim).kill()
    tasks = wait_for_running_tasks(client, f"{name}_app", REPLICAS, gone=[victim])
    assert len(tasks) == REPLICAS and victim not in tasks, f"Swarm runs {sorted(tasks)}"


def test_rolling_update_under_load_loses_no_request(swarm_stack):
    client, name = swarm_stack["docker"], swarm_stack["name"]
    service = f"{name}_app"
    before = wait_for_running_tasks(client, service, REPLICAS)

    stop = threading.Event()
    deadline = time.monotonic() + UPDATE_TIMEOUT_SECONDS + 30
    with ThreadPoolExecutor(TRAFFIC_THREADS) as pool:
        traffic = [
            pool.submit(keep_requesting, swarm_stack["url"], stop, deadline)
            for _ in range(TRAFFIC_THREADS)
        ]
        try:
            # --force replaces every task even though the spec did not change; the order
            # (start-first) and rollback come from the stack file.
            update = subprocess.run(
                ["docker", "service", "update", "--force", "--detach=false", "--quiet", service],
                capture_output=True,
                text=True,
                timeout=UPDATE_TIMEOUT_SECONDS,
                check=False,
            )
            time.sleep(3)  # the last old task drains while traffic still runs
        finally:
            stop.set()
        results = [future.result() for future in traffic]

    sent = sum(count for count, _ in results)
    failures = collections.Counter(failure for _, some in results for failure in some)
    failed = sum(failures.values())
    print(f"rolling update under load: sent={sent} failed={failed} {dict(failures)}")
    assert update.returncode == 0, update.stderr
    assert client.services.get(service).attrs["UpdateStatus"]["State"] == "completed"
    after = wait_for_running_tasks(client, service, REPLICAS, gone=before)
    assert len(after) == REPLICAS and not set(after) & set(before), "not every task was replaced"
    assert sent >= 100, f"only {sent} requests were sent during the update"
    assert failed == 0, f"{failed} of {sent} requests failed: {dict(failures)}"
