"""Every file that names an official image's default names the same one.

Dependabot updates the defaults in docker-compose.yml only (.github/dependabot.yml); the
same names live in the Dockerfile, .env.example and the scripts. A pull request that
changes one copy fails here until the others follow.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def compose_defaults():
    """{"NGINX_IMAGE": "nginx:1.30", ...}: each ${NAME_IMAGE:-default} in docker-compose.yml."""
    text = (ROOT / "docker-compose.yml").read_text()
    return dict(re.findall(r"\$\{(\w+_IMAGE):-([^}]+)\}", text))


def test_the_compose_file_names_the_official_images():
    assert {"PYTHON_IMAGE", "NGINX_IMAGE", "PROMETHEUS_IMAGE"} <= set(compose_defaults())


def test_env_example_names_the_compose_defaults():
    example = dict(re.findall(r"^(\w+_IMAGE)=(\S+)", (ROOT / ".env.example").read_text(), re.M))
    for name, image in compose_defaults().items():
        assert example.get(name) == image, name


def test_the_dockerfile_and_scripts_name_the_compose_defaults():
    defaults = compose_defaults()
    copies = {
        "Dockerfile": (r"^ARG PYTHON_IMAGE=(\S+)", defaults["PYTHON_IMAGE"]),
        "scripts/base-images.sh": (r"^official_nginx=(\S+)", defaults["NGINX_IMAGE"]),
        "scripts/tls-certs.sh": (r"setting NGINX_IMAGE (\S+?)\)", defaults["NGINX_IMAGE"]),
        "scripts/cluster.sh": (r"\$\{NGINX_IMAGE:-([^}]+)\}", defaults["NGINX_IMAGE"]),
    }
    for path, (pattern, image) in copies.items():
        found = re.findall(pattern, (ROOT / path).read_text(), re.M)
        assert found == [image], f"{path}: {found}, docker-compose.yml: {image}"
    base_images = (ROOT / "scripts/base-images.sh").read_text()
    assert re.findall(r"^official_python=(\S+)", base_images, re.M) == [defaults["PYTHON_IMAGE"]]
