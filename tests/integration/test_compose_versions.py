"""Compose v1 1.29 and v2 read the one compose file and run identically hardened containers.

The same file is brought up under each version (one replica, projects of their own), and
what the Docker engine reports for the containers is compared field by field: the whole
HostConfig (limits, read-only root, capabilities, tmpfs, restart policy, security options,
logging), the health check, the user, the environment and the mounts.
"""

import shutil
import subprocess

import pytest
from conftest import ROOT, Stack, free_port

V2_CANDIDATES = (["docker", "compose"], [str(ROOT / ".venv/compose-v2/docker-compose")])
# Differ by design between two projects: their network and the host port they publish.
PROJECT_SPECIFIC = {"NetworkMode", "PortBindings", "Binds", "Mounts"}
EMPTY = (None, [], {}, "")


def compose_version(command):
    """The version a Compose command reports ("1.29.2", "2.40.3"), or None if it is not here."""
    if shutil.which(command[0]) is None:
        return None
    result = subprocess.run([*command, "version", "--short"], capture_output=True, text=True)
    return result.stdout.strip().removeprefix("v") if result.returncode == 0 else None


def find_versions():
    """{"v1": (command, version), "v2": (command, version)} for the versions on this machine."""
    found = {}
    for command in (*V2_CANDIDATES, ["docker-compose"]):
        version = compose_version(command)
        if version:
            found.setdefault(f"v{version.split('.')[0]}", (command, version))
    return found


@pytest.fixture(scope="module")
def stacks_by_version(stack):
    """The stack's image brought up once under Compose v1 and once under v2."""
    versions = find_versions()
    missing = {"v1", "v2"} - set(versions)
    if missing:
        pytest.skip(f"needs Compose v1 and v2 side by side; missing here: {sorted(missing)}")
    started = {}
    try:
        for name, (command, version) in versions.items():
            project = f"{stack.project}{name}"
            env = {
                **stack.env,
                "COMPOSE": " ".join(command),
                "COMPOSE_PROJECT_NAME": project,
                "GATEWAY_PORT": str(free_port()),
                "GATEWAY_TLS_PORT": str(free_port()),
                "APP_REPLICAS": "1",
            }
            url = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
            started[name] = running = Stack(url, project, env, stack.docker)
            for service in ("app", "nginx"):
                running.compose("up", "-d", "--no-build", "--no-deps", service, timeout=300)
            running.wait_until_healthy()
            print(f"{name}: {' '.join(command)} (Compose {version}), project {project}")
        yield started
    finally:
        for running in started.values():
            running.compose("down", "--remove-orphans", "--timeout", "10", check=False)


def normalised(value, ports):
    """Empty values alike (v1 sends [] where v2 sends null), the test's host ports by name."""
    if isinstance(value, dict):
        return {k: normalised(v, ports) for k, v in value.items() if v not in EMPTY}
    if isinstance(value, list):
        return [normalised(v, ports) for v in value]
    if isinstance(value, str) and "=" in value:  # an environment entry: NAME=value
        name, _, setting = value.partition("=")
        return f"{name}={ports.get(setting, setting)}"
    return ports.get(value, value)


def engine_view(container, env):
    """What the engine applies to a container, minus what names its project."""
    attrs = container.attrs
    host = {k: v for k, v in attrs["HostConfig"].items() if k not in PROJECT_SPECIFIC}
    mounts = sorted((m["Type"], m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"])
    return normalised(
        {
            "HostConfig": host,
            "PortBindings": attrs["HostConfig"]["PortBindings"],
            "Mounts": mounts,
            "Healthcheck": attrs["Config"].get("Healthcheck"),
            "User": attrs["Config"]["User"],
            "Env": sorted(attrs["Config"]["Env"]),
            "StopSignal": attrs["Config"].get("StopSignal"),
            "StopTimeout": attrs["Config"].get("StopTimeout"),
            "Image": attrs["Config"]["Image"],
        },
        {env["GATEWAY_PORT"]: "PORT", env["GATEWAY_TLS_PORT"]: "TLS_PORT"},
    )


def differences(left, right, path=""):
    """Every field where two nested values differ, as 'path: left != right' lines."""
    if isinstance(left, dict) and isinstance(right, dict):
        lines = []
        for key in sorted(set(left) | set(right)):
            lines += differences(left.get(key), right.get(key), f"{path}.{key}")
        return lines
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]


@pytest.mark.parametrize("service", ["app", "nginx"])
def test_v1_and_v2_apply_the_same_container_settings(stacks_by_version, service):
    views = {}
    for name, running in stacks_by_version.items():
        (container,) = running.containers(service)
        views[name] = engine_view(container, running.env)
    assert differences(views["v1"], views["v2"]) == []
    # And what they agree on is the hardened, limited configuration.
    host = views["v2"]["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert views["v2"]["Healthcheck"]["Test"]


def test_both_versions_serve_through_nginx(stacks_by_version, session):
    for name, running in stacks_by_version.items():
        (replica,) = running.containers("app")
        response = session.get(f"{running.url}/info", timeout=10)
        assert response.status_code == 200, name
        assert response.json()["hostname"] == replica.attrs["Config"]["Hostname"], name


def test_compose_file_is_valid_for_each_version():
    versions = find_versions()
    assert versions, "no Compose found"
    for name, (command, version) in versions.items():
        result = subprocess.run(
            [*command, "config", "-q"], cwd=ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{name} (Compose {version}): {result.stderr}"
