"""The shipped nginx configurations pass nginx -t, and a bad setting stops nginx (and make
up) at once with one line that names it (the compose file: test_compose_versions)."""

import shutil
import subprocess
import time

import pytest
from conftest import ROOT, free_port


def nginx_image(stack):
    return stack.containers("nginx")[0].image


def start_sh_test(stack, certificates, **settings):
    """Run `start.sh test` in the nginx image as the stack runs it: (exit code, output)."""
    container = stack.docker.containers.run(
        nginx_image(stack),
        entrypoint=["/bin/sh", "/etc/nginx/gateway/start.sh", "test"],
        volumes={
            str(ROOT / "nginx"): {"bind": "/etc/nginx/gateway", "mode": "ro"},
            str(certificates): {"bind": "/etc/nginx/tls", "mode": "ro"},
        },
        environment=settings,
        user="101:101",
        read_only=True,
        tmpfs={"/tmp": ""},
        detach=True,
    )
    try:
        code = container.wait(timeout=60)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def test_nginx_config_passes_nginx_t(stack):
    code, output = start_sh_test(stack, stack.ca.parent)
    assert code == 0 and "test is successful" in output, output


BAD_SETTINGS = {
    # Today's trap: nginx itself exits with "connection limit must be less 65536".
    "CONNECTIONS_PER_CLIENT": "100000",
    "RATE_LIMIT_PER_SECOND": "lots",
    "RATE_LIMIT_BURST": "0",
    "NGINX_READ_TIMEOUT": "5s",
    "MAX_BODY_SIZE": "1mb",
    "GATEWAY_TLS_PORT": "70000",
    "TLS_REDIRECT_HTTP": "yes",
    "HSTS_MAX_AGE": "-1",
    "TRUSTED_PROXIES": "10.0.0.0/8, 10.1.0.0/33",
    "TLS_CERT_FILE": "missing.crt",
    "NGINX_UPSTREAM": "app",
    "NGINX_RESOLVER": "kube-dns.kube-system",
}


@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_bad_setting_stops_nginx_with_one_line_naming_it(stack, setting):
    code, output = start_sh_test(stack, stack.ca.parent, **{setting: BAD_SETTINGS[setting]})
    assert code == 2, output
    (line,) = output.strip().splitlines()
    assert line.startswith(f"start.sh: {setting}"), line


@pytest.fixture
def certificate_folder(stack, tmp_path):
    """A copy of the stack's certificate folder (its server key stays readable by nginx)."""
    folder = tmp_path / "tls"
    shutil.copytree(stack.ca.parent, folder)
    folder.chmod(0o755)
    # A copy belongs to whoever runs the tests: let nginx's uid read it again.
    (folder / "server.key").chmod(0o644)
    return folder


@pytest.mark.parametrize(
    ("spoil", "setting", "says"),
    [
        ("key unreadable", "TLS_KEY_FILE", "is not a file nginx (uid 101) can read"),
        ("key of another certificate", "TLS_KEY_FILE", "is not the key of"),
        ("not a certificate", "TLS_CERT_FILE", "is not a PEM certificate"),
    ],
)
def test_a_bad_certificate_stops_nginx_with_one_line_naming_it(
    stack, certificate_folder, spoil, setting, says
):
    key, cert = certificate_folder / "server.key", certificate_folder / "server.crt"
    if spoil == "key unreadable":
        # As a key fresh from a CA often is: readable by its owner only, not by uid 101.
        key.chmod(0o600)
    elif spoil == "key of another certificate":
        # The CA's certificate with the server's key: a pair that does not match.
        shutil.copy(certificate_folder / "ca.crt", cert)
    else:
        cert.write_text("not a certificate\n")
    code, output = start_sh_test(stack, certificate_folder)
    assert code == 2, output
    (line,) = output.strip().splitlines()
    assert line.startswith(f"start.sh: {setting}") and says in line, line


def test_make_up_fails_within_seconds_on_a_setting_nginx_cannot_take(stack):
    """scripts/up.sh checks nginx's settings before starting anything: no restart loop."""
    project = f"{stack.project}badsetting"
    env = {
        **stack.env,
        "COMPOSE_PROJECT_NAME": project,
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_TLS_PORT": str(free_port()),
        "CONNECTIONS_PER_CLIENT": "100000",
    }
    started = time.monotonic()
    up = subprocess.run(
        [ROOT / "scripts/up.sh"], env=env, capture_output=True, text=True, timeout=600
    )
    print(f"make up failed after {time.monotonic() - started:.1f} s:\n{up.stderr}")
    assert up.returncode != 0
    assert "start.sh: CONNECTIONS_PER_CLIENT must be a whole number from 1 to 65535" in up.stderr
    # It stopped before anything started: no container of the project, not even a replica.
    labels = [f"com.docker.compose.project={project}"]
    assert stack.docker.containers.list(all=True, filters={"label": labels}) == []
    assert stack.docker.networks.list(filters={"label": labels}) == []
