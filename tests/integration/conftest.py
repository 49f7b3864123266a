"""One real stack for the whole session: its own Compose project and a free port."""

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import requests

from balance_check import Identity, check

ROOT = Path(__file__).resolve().parents[2]
# GATEWAY_TEST_TLS=true: the tests reach the stack through its TLS port (HTTPS, verified
# against the stack's local CA) instead of the plain one; the suites must pass either way.
THROUGH_TLS = os.environ.get("GATEWAY_TEST_TLS", "").lower() == "true"
# The Compose the project chose (COMPOSE, else v2, else docker-compose): scripts/compose.
COMPOSE = [str(ROOT / "scripts/compose")]
# ...pinned for the stacks the tests start, copies of the project included.
COMPOSE_COMMAND = subprocess.run(
    [*COMPOSE, "--command"], capture_output=True, text=True
).stdout.strip()
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_report_header():
    which = subprocess.run([*COMPOSE, "--which"], capture_output=True, text=True)
    return f"compose: {which.stdout.strip() or which.stderr.strip()}"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)
    # The Swarm tests last: leaving the swarm they made cost the session's running stack its
    # Docker DNS records here (Engine 20.10: nginx logged "app could not be resolved" from
    # then on, and every later request through it got 502).
    items.sort(key=lambda item: item.get_closest_marker("swarm") is not None)


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
    # The project's folder: a copy of it for the tests that change files.
    directory: Path = ROOT
    # The TLS port's base URL and the CA that signed its certificate (None: not known).
    tls_url: str | None = None
    ca: Path | None = None

    def compose(self, *args, check=True, timeout=300):
        result = subprocess.run(
            [self.directory / "scripts/compose", *args],
            cwd=self.directory,
            env=self.env,
            timeout=timeout,
            capture_output=True,
            text=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} failed:\n{result.stderr}")
        return result

    def containers(self, service="app", status="running"):
        labels = [f"com.docker.compose.project={self.project}"]
        labels.append(f"com.docker.compose.service={service}")
        return self.docker.containers.list(filters={"label": labels, "status": status})

    def wait_until_healthy(self, timeout=180):
        script = self.directory / "scripts/wait-healthy.sh"
        subprocess.run([script, str(timeout)], env=self.env, check=True)

    def start(self):
        """Start it one service at a time, as `make up` would, and wait until it is healthy."""
        # nginx apart, with --no-deps: Compose v1 fails `up` outright when a replica's 3 s
        # health check happens to time out (a busy machine); wait_until_healthy waits instead.
        self.compose("up", "-d", "--no-deps", "app", timeout=900)
        self.wait_until_healthy()
        self.compose("up", "-d", "--no-deps", "nginx")
        self.wait_until_healthy()

    def stop(self):
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


def make_certificates(env):
    """Run scripts/tls-certs.sh for a stack's TLS_CERT_DIR, as `make up` does."""
    subprocess.run([ROOT / "scripts/tls-certs.sh"], env=env, check=True, capture_output=True)


def tls_port_env(env, folder):
    """Settings for a stack's own TLS port and certificate folder (a local CA made there)."""
    settings = {"GATEWAY_TLS_PORT": str(free_port()), "TLS_CERT_DIR": str(folder)}
    make_certificates({**env, **settings})
    return settings


@contextlib.contextmanager
def extra_stack(stack, name, **settings):
    """A small stack beside the session's: the same image, its own project, ports and settings.

    It is reached the way the session's stack is (plain HTTP, or TLS with GATEWAY_TEST_TLS),
    through the same certificate folder, and removed at the end.
    """
    project = f"{stack.project}{name}"
    port, tls_port = free_port(), free_port()
    env = {
        **stack.env,
        "COMPOSE_PROJECT_NAME": project,
        "GATEWAY_PORT": str(port),
        "GATEWAY_TLS_PORT": str(tls_port),
        **settings,
    }
    urls = f"http://127.0.0.1:{port}", f"https://127.0.0.1:{tls_port}"
    url = urls[1] if THROUGH_TLS else urls[0]
    extra = Stack(url, project, env, stack.docker, tls_url=urls[1], ca=stack.ca)
    try:
        extra.start()
        yield extra
    finally:
        extra.stop()


@pytest.fixture(scope="session")
def stack(request, docker_client, tmp_path_factory):
    """The stack under test: GATEWAY_URL + GATEWAY_PROJECT name a running one, else start one.

    For a running one, GATEWAY_TLS_URL and GATEWAY_CA (its CA file) let the TLS tests run.
    """
    if os.environ.get("GATEWAY_URL"):
        project = os.environ.get("GATEWAY_PROJECT")
        if not project:
            pytest.fail("GATEWAY_URL needs GATEWAY_PROJECT: the Compose project to inspect")
        env = {**os.environ, "COMPOSE_PROJECT_NAME": project}
        ca = os.environ.get("GATEWAY_CA")
        yield Stack(
            os.environ["GATEWAY_URL"].rstrip("/"),
            project,
            env,
            docker_client,
            tls_url=os.environ.get("GATEWAY_TLS_URL", "").rstrip("/") or None,
            ca=Path(ca) if ca else None,
        )
        return

    project = f"gatewaytest{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "COMPOSE": COMPOSE_COMMAND,
        "COMPOSE_PROJECT_NAME": project,
        "GATEWAY_PORT": str(port),
        # An image of its own: a user's image (or another test run's) is never replaced,
        # and replicas added by scaling run exactly the code under test.
        "APP_IMAGE": f"{project}-app",
        "APP_VERSION": "test",
    }
    # The per-client limits are the shipped ones: every test request comes from one
    # address, a legitimate heavy client, which the defaults must serve (test_limits.py).
    # A certificate folder of its own: the rotation test replaces its files.
    certificates = tmp_path_factory.mktemp("tls")
    env.update(tls_port_env(env, certificates))
    tls_url = f"https://127.0.0.1:{env['GATEWAY_TLS_PORT']}"
    url = tls_url if THROUGH_TLS else f"http://127.0.0.1:{port}"
    running = Stack(url, project, env, docker_client, tls_url=tls_url, ca=certificates / "ca.crt")
    if THROUGH_TLS:
        # requests (and so balance_check and every test's client) verify against the CA.
        os.environ["REQUESTS_CA_BUNDLE"] = str(running.ca)
    try:
        running.compose("build", "app", timeout=900)
        running.start()
        yield running
    finally:
        if request.session.testsfailed:
            print(running.compose("logs", "--tail=30", check=False).stdout)
        running.stop()
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(f"{project}-app:test")


def copy_of_project(destination):
    """Copy the project as a user's clone has it (git's files and .env) into `destination`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in [*(n.decode() for n in listed if n), ".env"]:
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    # pytest's temporary folders are private (0700); the replicas (uid 10001) read this
    # one through make dev's bind mount, as they read a clone made with the usual umask.
    destination.chmod(0o755)
    return destination


@pytest.fixture
def session():
    """An HTTP session that does not keep connections: every request is balanced anew."""
    with requests.Session() as http:
        http.headers["Connection"] = "close"
        yield http


@pytest.fixture(scope="module")
def report(request):
    """Write one line per scenario to the terminal at once, and all of them at the end."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    lines = []

    def write(line):
        with capture.global_and_fixture_disabled():
            terminal.write_line(line)

    def report_line(line):
        lines.append(line)
        write(f"\n  {line}")

    yield report_line
    title = getattr(request.module, "REPORT_TITLE", request.module.__name__)
    write(f"\n{title} (steady GET traffic through nginx):")
    for line in lines:
        write(f"  {line}")


def fault(stack, replica, *args):
    """Run scripts/fault.sh for this replica (by its hostname, as a user would copy it).

    Return when it started: the switch flips somewhere between then and its return (the
    command runs inside the replica through docker exec, which takes a second or so).
    """
    started = time.monotonic()
    done = subprocess.run(
        [ROOT / "scripts/fault.sh", replica.attrs["Config"]["Hostname"], *args],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return started


@pytest.fixture(scope="module")
def breakable(stack):
    """The session's stack, for a module that breaks replicas; after it, wait until nginx
    has re-resolved them and forgiven every failure (NGINX_RESOLVE_SECONDS and
    NGINX_FAIL_TIMEOUT as shipped), so that the modules that follow find it whole."""
    yield stack
    time.sleep(2 + 5)


def check_swarm_tasks(url, requests_total):
    """The balance checker against Swarm tasks: each answer names its container (hostname)
    and its overlay address; a new connection per request, so each is balanced anew."""
    return check(
        url,
        requests_total=requests_total,
        concurrency=4,
        timeout=10,
        identity=Identity(fields=("hostname", "ip")),
        new_connections=True,
    )
