"""One real stack for the whole session: its own Compose project and a free port."""

import contextlib
import os
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Stack:
    """A running stack: where to reach it and how to ask Docker about it."""

    url: str
    project: str
    env: dict
    docker: docker.DockerClient

    def compose(self, *args, check=True, timeout=300):
        result = subprocess.run(
            ["docker-compose", *args],
            cwd=ROOT,
            env=self.env,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed:\n{result.stderr}")
        return result

    def containers(self, service="app", status="running"):
        labels = [f"com.docker.compose.project={self.project}"]
        labels.append(f"com.docker.compose.service={service}")
        return self.docker.containers.list(filters={"label": labels, "status": status})

    def wait_until_healthy(self, timeout=180):
        env = {**self.env, "COMPOSE": "docker-compose"}
        subprocess.run([ROOT / "scripts/wait-healthy.sh", str(timeout)], env=env, check=True)


@pytest.fixture(scope="session")
def docker_client():
    """The Docker engine; under CI=true a missing engine fails instead of skipping."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # noqa: BLE001 - any failure means "no engine"
        if IN_CI:
            pytest.fail(f"CI=true but the Docker engine is not reachable: {error}")
        pytest.skip(f"Docker engine not reachable: {error}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack(request, docker_client):
    """The stack under test: GATEWAY_URL + GATEWAY_PROJECT name a running one, else start one."""
    if os.environ.get("GATEWAY_URL"):
        project = os.environ.get("GATEWAY_PROJECT")
        if not project:
            pytest.fail("GATEWAY_URL needs GATEWAY_PROJECT: the Compose project to inspect")
        env = {**os.environ, "COMPOSE_PROJECT_NAME": project}
        yield Stack(os.environ["GATEWAY_URL"].rstrip("/"), project, env, docker_client)
        return

    project = f"gatewaytest{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": project,
        "GATEWAY_PORT": str(port),
        # An image of its own: a user's image (or another test run's) is never replaced,
        # and replicas added by scaling run exactly the code under test.
        "APP_IMAGE": f"{project}-app",
        "APP_VERSION": "test",
        # Every test request comes from one address (127.0.0.1): the per-client limits
        # would throttle the load the tests make on purpose. test_bad_input proves the
        # limits on a stack of its own.
        "RATE_LIMIT_PER_SECOND": "100000",
        "RATE_LIMIT_BURST": "100000",
        "CONNECTIONS_PER_CLIENT": "4096",
    }
    running = Stack(f"http://127.0.0.1:{port}", project, env, docker_client)
    try:
        # nginx apart, with --no-deps: Compose v1 fails `up` outright when a replica's 3 s
        # health check happens to time out (a busy machine); wait_until_healthy waits instead.
        running.compose("up", "-d", "--build", "app", timeout=900)
        running.compose("up", "-d", "--no-deps", "nginx")
        running.wait_until_healthy()
        yield running
    finally:
        if request.session.testsfailed:
            print(running.compose("logs", "--tail=30", check=False).stdout)
        running.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(f"{project}-app:test")


@pytest.fixture
def session():
    """An HTTP session that does not keep connections: every request is balanced anew."""
    with requests.Session() as http:
        http.headers["Connection"] = "close"
        yield http
