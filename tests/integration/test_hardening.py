"""The running containers are hardened: each CIS Docker Benchmark (v1.6.0) item, by number."""

import pytest

SERVICES = ["app", "nginx"]


@pytest.fixture(params=SERVICES)
def containers(request, stack):
    """Every running container of one service, as the Docker engine reports it."""
    running = stack.containers(request.param)
    assert running, f"no running {request.param} container"
    return running


def test_4_1_runs_as_a_non_root_user(containers):
    for container in containers:
        user = container.attrs["Config"]["User"]
        assert user, f"{container.name} runs as the image's default user (root)"
        assert user.split(":")[0] not in ("0", "root"), f"{container.name} runs as {user}"
        # The process that really runs, not only the configured user.
        (_pid, uid) = container.top(ps_args="-o pid,uid")["Processes"][0]
        assert uid != "0", f"{container.name}'s first process runs as root"


def test_4_6_has_a_healthcheck_and_is_healthy(containers):
    for container in containers:
        assert container.attrs["Config"].get("Healthcheck", {}).get("Test"), container.name
        assert container.attrs["State"]["Health"]["Status"] in ("healthy", "starting")


def test_5_4_drops_every_capability_and_5_5_is_not_privileged(containers):
    for container in containers:
        host = container.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"], f"{container.name}: CapDrop={host['CapDrop']}"
        assert not host["CapAdd"], f"{container.name}: CapAdd={host['CapAdd']}"
        assert host["Privileged"] is False, container.name


def test_5_11_memory_and_5_12_cpu_are_limited(containers):
    for container in containers:
        host = container.attrs["HostConfig"]
        assert host["Memory"] > 0, f"{container.name}: no memory limit"
        assert host["NanoCpus"] > 0 or host["CpuQuota"] > 0, f"{container.name}: no CPU limit"


def test_5_13_root_filesystem_is_read_only_with_small_tmpfs(containers):
    for container in containers:
        host = container.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, container.name
        for path, options in (host.get("Tmpfs") or {}).items():
            assert {"noexec", "nosuid"} <= set(options.split(",")), f"{path}: {options}"
            assert "size=" in options, f"{container.name}: {path} has no size limit"
        probe = container.exec_run(
            ["sh", "-c", "touch /probe"], user=container.attrs["Config"]["User"]
        )
        assert probe.exit_code != 0, f"{container.name} could write to its root filesystem"


def test_5_26_cannot_gain_new_privileges(containers):
    for container in containers:
        options = container.attrs["HostConfig"]["SecurityOpt"] or []
        assert "no-new-privileges:true" in options or "no-new-privileges" in options, options


def test_5_29_number_of_processes_is_limited(containers):
    for container in containers:
        assert (container.attrs["HostConfig"]["PidsLimit"] or 0) > 0, container.name


def test_5_32_docker_socket_is_not_mounted(containers):
    for container in containers:
        for mount in container.attrs["Mounts"]:
            assert "docker.sock" not in mount["Source"], f"{container.name}: {mount['Source']}"
        assert container.attrs["HostConfig"]["NetworkMode"] != "host", container.name
