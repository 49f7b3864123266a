"""The README's "Make it yours" steps, followed on a copy of the project, work.

A route is added to service/, the image and the project are renamed in .env, `make up`
builds and starts it, and every replica the Docker engine runs serves the new route. The
image installs only from the hashed lock: a lock missing a dependency fails the build.
"""

import os
import ssl
import subprocess
import uuid

import httpx
import pytest
import requests
from conftest import COMPOSE_COMMAND, ROOT, copy_of_project, free_port

# What the README tells a user to add to service/__init__.py.
HELLO_ROUTE = """

@blueprint.get("/hello")
def hello():
    return {"hello": "world"}
"""


def set_settings(folder, **settings):
    """Append settings to the copy's .env, as a user edits it."""
    with (folder / ".env").open("a") as env_file:
        for name, value in settings.items():
            env_file.write(f"{name}={value}\n")


def user_environment(port, tls_port=None):
    """The environment of a user's shell: nothing of the test session's stack in it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE", "APP_"))}
    env.pop("REQUESTS_CA_BUNDLE", None)
    ports = {"GATEWAY_PORT": str(port), "GATEWAY_TLS_PORT": str(tls_port or free_port())}
    return {**env, "COMPOSE": COMPOSE_COMMAND, **ports}


@pytest.fixture(scope="module")
def own_service(docker_client, tmp_path_factory):
    """A copy of the project made into `myservice…` by the README's steps, up with make up."""
    folder = copy_of_project(tmp_path_factory.mktemp("myservice"))
    name = f"myservice{uuid.uuid4().hex[:6]}"
    with (folder / "service/__init__.py").open("a") as routes:
        routes.write(HELLO_ROUTE)
    set_settings(folder, COMPOSE_PROJECT_NAME=name, APP_IMAGE=name)
    port, tls_port = free_port(), free_port()
    env = user_environment(port, tls_port)
    try:
        up = subprocess.run(
            ["make", "up"], cwd=folder, env=env, capture_output=True, text=True, timeout=900
        )
        print(up.stdout, up.stderr)
        assert up.returncode == 0, "make up failed"
        clone = {"folder": folder, "tls_url": f"https://localhost:{tls_port}", "up": up.stdout}
        yield name, f"http://127.0.0.1:{port}", clone
    finally:
        subprocess.run(["make", "down"], cwd=folder, env=env, timeout=300)
        for image in docker_client.images.list(name=name):
            docker_client.images.remove(image.id, force=True)


def test_an_added_route_is_served_by_every_replica(own_service, docker_client):
    name, url, _ = own_service
    labels = [f"com.docker.compose.project={name}", "com.docker.compose.service=app"]
    replicas = docker_client.containers.list(filters={"label": labels})
    assert len(replicas) == 5
    assert {c.attrs["Config"]["Image"] for c in replicas} == {f"{name}:1.0.0"}

    hostnames = {c.attrs["Config"]["Hostname"] for c in replicas}
    served = set()
    with requests.Session() as http:
        http.headers["Connection"] = "close"
        for _ in range(100):
            response = http.get(f"{url}/hello", timeout=10)
            assert response.status_code == 200
            assert response.json() == {"hello": "world"}
            served.add(response.headers["X-Served-By"])
            if served == hostnames:
                break
    assert served == hostnames


def test_a_fresh_clone_serves_https_and_http2_with_the_ca_make_up_printed(own_service):
    """The README's promise: make up makes a local CA, prints it, and serves HTTP/2 with it."""
    _, _, clone = own_service
    ca = clone["folder"] / "certs/ca.crt"
    assert f"local CA {ca}" in clone["up"], clone["up"]
    # Trusting that CA and nothing else.
    context = ssl.create_default_context(cafile=ca)
    with httpx.Client(http2=True, verify=context) as client:
        response = client.get(f"{clone['tls_url']}/hello", timeout=10)
    assert response.http_version == "HTTP/2"
    assert response.json() == {"hello": "world"}
    # Never in git: the clone's status shows nothing new (certs/ is ignored).
    listed = subprocess.run(
        ["git", "check-ignore", "certs/ca.crt", "certs/server.key"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert listed.stdout.split() == ["certs/ca.crt", "certs/server.key"]


def test_the_image_builds_only_from_the_lock(stack, tmp_path_factory):
    folder = copy_of_project(tmp_path_factory.mktemp("unlocked"))
    lock = folder / "requirements.txt"
    # Take one transitive dependency (Flask's blinker) out of the lock.
    lines = lock.read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("blinker=="))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    lock.write_text("\n".join(lines[:start] + lines[end:]))

    env = {
        **user_environment(free_port()),
        "COMPOSE_PROJECT_NAME": f"{stack.project}unlocked",
        "APP_IMAGE": f"{stack.project}-unlocked",
    }
    build = subprocess.run(
        [folder / "scripts/compose", "build", "app"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode != 0, "the image built from a lock that lacks blinker"
    assert "blinker" in build.stdout + build.stderr
