"""make dev: an edit to gateway.py is served by every replica within seconds, no rebuild.

Runs on a copy of the project (a user's clone), brought up the way `make dev` does it.
The time from saving the file to the last replica serving the edit is printed; the
README quotes it. The test fails only if some replica never serves it within a minute.
"""

import re
import statistics
import subprocess
import time
import uuid

import pytest
import requests
from conftest import Stack, copy_of_project, free_port

REPLICAS = 5
EDITS = 3


@pytest.fixture(scope="module")
def dev_stack(stack, tmp_path_factory):
    """`make dev` in a copy of the project: the source bind-mounted, gunicorn reloading."""
    folder = copy_of_project(tmp_path_factory.mktemp("clone"))
    project = f"{stack.project}dev"
    port = free_port()
    env = {
        **stack.env,
        "COMPOSE_PROJECT_NAME": project,
        "COMPOSE_FILE": "docker-compose.yml:docker-compose.dev.yml",
        "GATEWAY_PORT": str(port),
        "GATEWAY_TLS_PORT": str(free_port()),
        "APP_REPLICAS": str(REPLICAS),
    }
    dev = Stack(f"http://127.0.0.1:{port}", project, env, stack.docker, directory=folder)
    try:
        subprocess.run([folder / "scripts/up.sh"], env=env, check=True, timeout=900)
        yield dev
    finally:
        dev.compose("down", "--remove-orphans", "--timeout", "10", check=False)


def save_message(folder, message):
    """Edit gateway.py the way a developer would: the /info answer's message changes."""
    source = folder / "gateway.py"
    text = source.read_text()
    edited = re.sub(r'"message": [^,\n]+,', f'"message": "{message}",', text, count=1)
    assert edited != text, "gateway.py has no '\"message\": ...,' line to edit"
    source.write_text(edited)


def seconds_until_every_replica_serves(dev, message, replicas, limit=60):
    """Seconds from now until every replica has answered /info with `message`."""
    began = time.monotonic()
    served = set()
    with requests.Session() as http:
        http.headers["Connection"] = "close"
        while time.monotonic() - began < limit:
            response = http.get(f"{dev.url}/info", timeout=10)
            if response.status_code == 200 and response.json()["message"] == message:
                served.add(response.headers["X-Served-By"])
            if served >= replicas:
                return time.monotonic() - began
            time.sleep(0.02)
    pytest.fail(f"after {limit}s only {len(served)} of {len(replicas)} replicas serve the edit")


def test_an_edit_is_served_by_every_replica_without_a_rebuild(dev_stack, capsys):
    replicas = {c.attrs["Config"]["Hostname"] for c in dev_stack.containers("app")}
    assert len(replicas) == REPLICAS
    images_before = {c.image.id for c in dev_stack.containers("app")}

    timings = []
    for _ in range(EDITS):
        message = f"edited-{uuid.uuid4().hex[:8]}"
        save_message(dev_stack.directory, message)
        timings.append(seconds_until_every_replica_serves(dev_stack, message, replicas))
        time.sleep(2)  # let the reloaded workers settle before the next edit

    # Served by the same containers from the same image: reloaded, not rebuilt or recreated.
    assert {c.attrs["Config"]["Hostname"] for c in dev_stack.containers("app")} == replicas
    assert {c.image.id for c in dev_stack.containers("app")} == images_before
    with capsys.disabled():
        each = ", ".join(f"{t:.1f}" for t in timings)
        median = statistics.median(timings)
        print(f"\n  make dev: every replica serves an edit in {each} s (median {median:.1f} s)")
