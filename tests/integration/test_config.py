"""The shipped configuration files pass their own tools' checks."""

import subprocess

from conftest import ROOT


def test_compose_file_is_valid():
    subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, check=True)


def test_nginx_config_passes_nginx_t(stack):
    image = stack.containers("nginx")[0].image
    output = stack.docker.containers.run(
        image,
        entrypoint=["/bin/sh", "/etc/nginx/gateway/start.sh", "test"],
        volumes={str(ROOT / "nginx"): {"bind": "/etc/nginx/gateway", "mode": "ro"}},
        user="101:101",
        remove=True,
        stderr=True,
    )
    assert b"test is successful" in output
