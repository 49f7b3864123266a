"""One request followed from nginx to its replica; per-replica metrics; what stays private."""

import json
import re
import time
import uuid

import pytest
from conftest import ROOT
from prometheus_client.parser import text_string_to_metric_families

NGINX_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
SCRAPE = (
    "import urllib.request\n"
    "print(urllib.request.urlopen('http://127.0.0.1:8000/metrics', timeout=5).read().decode())\n"
)


def json_lines(container, stderr=True):
    """Every log line of ``container`` that is a JSON object."""
    lines = container.logs(stdout=True, stderr=stderr).decode().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def lines_with_id(container, request_id, stderr=True, wait_seconds=10):
    """The container's JSON log lines for ``request_id``, waiting a little for them to arrive."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = [
            line for line in json_lines(container, stderr) if line.get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def replica_named(stack, hostname):
    (replica,) = [c for c in stack.containers("app") if c.attrs["Config"]["Hostname"] == hostname]
    return replica


def replica_address(replica):
    (network,) = replica.attrs["NetworkSettings"]["Networks"].values()
    return f"{network['IPAddress']}:8000"


def info_requests_counted(replica):
    """/metrics of one replica, read inside its container: /info requests answered 200."""
    result = replica.exec_run(["python3", "-c", SCRAPE])
    assert result.exit_code == 0, result.output
    families = text_string_to_metric_families(result.output.decode())
    samples = (sample for family in families for sample in family.samples)
    wanted = ("gateway_http_requests_total", {"endpoint": "/info", "status": "200"})
    return next((s.value for s in samples if (s.name, s.labels) == wanted), 0)


def assert_followed_through_both_logs(stack, request_id, served_by):
    """nginx and the replica logged request_id; no replica that nginx did not try did."""
    replica = replica_named(stack, served_by)
    (nginx,) = stack.containers("nginx")
    (proxied,) = lines_with_id(nginx, request_id, stderr=False)
    # After a retry nginx lists every replica it tried ("a:8000, b:8000"): the last answered.
    tried = proxied["upstream_addr"].split(", ")
    assert tried[-1] == replica_address(replica)
    assert proxied["upstream_status"].split(", ")[-1] == "200"
    assert proxied["status"] == 200
    assert proxied["request_time"] >= 0

    (served,) = lines_with_id(replica, request_id)
    assert (served["method"], served["path"], served["status"]) == ("GET", "/info", 200)
    for other in stack.containers("app"):
        if replica_address(other) not in tried:
            assert not lines_with_id(other, request_id, wait_seconds=0), other.name


def test_one_request_id_in_nginx_and_replica_logs(stack, session):
    request_id = f"obs-{uuid.uuid4().hex}"
    response = session.get(f"{stack.url}/info", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == response.json()["request_id"] == request_id
    assert_followed_through_both_logs(stack, request_id, response.headers["X-Served-By"])


@pytest.mark.parametrize(
    "make_bad_id",
    [
        lambda token: token[:7],  # too short
        lambda token: f"obs {token}",  # a space
        lambda token: f'obs"{token}',  # a quote that would end a JSON string
        lambda token: f"obs\\n{token}",  # an escaped newline that a text log would print
        lambda token: f"obs{{{token}}}",  # braces
        lambda token: "o" * 100 + token,  # too long: 132 characters
    ],
    ids=["short", "space", "quote", "escaped-newline", "braces", "too-long"],
)
def test_malformed_request_id_is_replaced_not_trusted(stack, session, make_bad_id):
    # Letters g-v only: never part of nginx's hex ids, of which the logs hold many (a flood
    # in test_limits leaves 200,000 lines, where a 7-hex-digit token turned up by chance).
    token = uuid.uuid4().hex.translate(str.maketrans("0123456789abcdef", "ghijklmnopqrstuv"))
    bad_id = make_bad_id(token)
    response = session.get(f"{stack.url}/info", headers={"X-Request-ID": bad_id})
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert NGINX_REQUEST_ID.fullmatch(request_id), request_id
    assert response.json()["request_id"] == request_id
    assert_followed_through_both_logs(stack, request_id, response.headers["X-Served-By"])

    # The id the client sent is in no log: not nginx's, not any replica's.
    for container in stack.containers("nginx") + stack.containers("app"):
        assert token[:7] not in container.logs().decode(), container.name


def test_metrics_count_the_requests_each_replica_served(stack, session):
    replicas = {c.attrs["Config"]["Hostname"]: c for c in stack.containers("app")}
    before = {hostname: info_requests_counted(r) for hostname, r in replicas.items()}
    served = dict.fromkeys(replicas, 0)
    for _ in range(40):
        response = session.get(f"{stack.url}/info", timeout=10)
        assert response.status_code == 200
        served[response.headers["X-Served-By"]] += 1
    after = {hostname: info_requests_counted(r) for hostname, r in replicas.items()}
    assert {hostname: after[hostname] - before[hostname] for hostname in replicas} == served


def test_replica_metrics_name_the_replica(stack):
    replica = stack.containers("app")[0]
    text = replica.exec_run(["python3", "-c", SCRAPE]).output.decode()
    hostname = replica.attrs["Config"]["Hostname"]
    version = dict(e.split("=", 1) for e in replica.attrs["Config"]["Env"])["APP_VERSION"]
    assert f'gateway_replica_info{{hostname="{hostname}",version="{version}"}} 1.0' in text
    assert "gateway_http_request_duration_seconds_bucket" in text
    assert "gateway_http_requests_in_flight" in text


@pytest.mark.parametrize("path", ["/metrics", "/metrics?x=1", "//metrics", "/%6Detrics"])
def test_metrics_are_not_public_through_nginx(stack, session, path):
    response = session.get(f"{stack.url}{path}")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found", "status": 404}
    assert "gateway_http_requests" not in response.text
    assert NGINX_REQUEST_ID.fullmatch(response.headers["X-Request-ID"])


def test_stub_status_is_internal_only(stack, session):
    (nginx,) = stack.containers("nginx")
    ports = nginx.attrs["NetworkSettings"]["Ports"]
    # Exposed to the Compose network, published to no host port (8443 is HTTPS).
    assert "8081/tcp" in ports
    assert ports["8081/tcp"] is None
    assert {port for port, bindings in ports.items() if bindings} == {"8080/tcp", "8443/tcp"}
    assert session.get(f"{stack.url}/nginx-status").status_code == 404

    inside = nginx.exec_run(["curl", "-fsS", "http://127.0.0.1:8081/nginx-status"])
    assert inside.exit_code == 0, inside.output
    assert inside.output.startswith(b"Active connections:")
    # From another container on the Compose network, as Prometheus' exporter asks: its
    # private address is on stub_status's allow list.
    (network,) = nginx.attrs["NetworkSettings"]["Networks"]
    exporter = stack.docker.containers.run(
        nginx.image, ["curl", "-fsS", "http://nginx:8081/nginx-status"], entrypoint=[],
        network=network, remove=True,
    )  # fmt: skip
    assert exporter.startswith(b"Active connections:")


def test_every_replica_log_line_is_json(stack, session):
    session.get(f"{stack.url}/info")
    for replica in stack.containers("app"):
        lines = replica.logs(stdout=True, stderr=True).decode().splitlines()
        assert lines, replica.name
        for line in lines:
            assert isinstance(json.loads(line), dict), line


def test_every_nginx_access_line_is_json(stack, session):
    session.get(f"{stack.url}/info")
    (nginx,) = stack.containers("nginx")
    lines = nginx.logs(stdout=True, stderr=False).decode().splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"time", "request_id", "status", "upstream_addr", "request_time"} <= set(entry)


@pytest.mark.parametrize(
    ("settings", "passes"),
    [
        ({"LOG_FORMAT": "text", "METRICS_PUBLIC": "true"}, True),
        ({"LOG_FORMAT": "json", "METRICS_PUBLIC": "false"}, True),
        ({"LOG_FORMAT": "xml"}, False),
        ({"METRICS_PUBLIC": "yes"}, False),
        ({"NGINX_WORKER_PROCESSES": "auto"}, True),
        ({"NGINX_WORKER_PROCESSES": "0"}, False),
    ],
)
def test_log_and_metrics_switches_render_a_valid_nginx_config(stack, settings, passes):
    image = stack.containers("nginx")[0].image
    container = stack.docker.containers.run(
        image,
        entrypoint=["/bin/sh", "/etc/nginx/gateway/start.sh", "test"],
        volumes={
            str(ROOT / "nginx"): {"bind": "/etc/nginx/gateway", "mode": "ro"},
            # The TLS server needs its certificate: the stack's own.
            str(stack.ca.parent): {"bind": "/etc/nginx/tls", "mode": "ro"},
        },
        environment=settings,
        user="101:101",
        detach=True,
    )
    try:
        status = container.wait(timeout=60)["StatusCode"]
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    assert (status == 0) == passes, output
    if passes:
        assert "test is successful" in output


def test_prometheus_profile_is_defined_but_not_started(stack):
    # Compose v2 lists a profile's services only when that profile is named.
    services = stack.compose("--profile", "monitoring", "config", "--services").stdout.split()
    assert {"prometheus", "nginx-exporter"} <= set(services)
    assert stack.containers("prometheus", status="running") == []
    assert stack.containers("nginx-exporter", status="running") == []
