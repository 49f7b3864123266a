"""Requests through nginx land on every running replica, and only on them.

The samples come from balance_check, the same code path as the `balance-check` command.
"""

from balance_check import Expectations, Identity, check, unmet_expectations

REQUESTS = 300


def replicas_by_hostname(stack):
    """Ask the engine which app replicas run: hostname -> their IP addresses."""
    replicas = {}
    for container in stack.containers("app"):
        networks = container.attrs["NetworkSettings"]["Networks"].values()
        replicas[container.attrs["Config"]["Hostname"]] = {n["IPAddress"] for n in networks}
    return replicas


def test_requests_reach_every_replica(stack):
    replicas = replicas_by_hostname(stack)
    assert len(replicas) == 5, f"expected 5 running replicas, Docker has {sorted(replicas)}"

    # Named by hostname and IP, so every answer can be matched to a running container;
    # a new connection per request, so nothing but nginx decides where each one goes.
    result = check(
        f"{stack.url}/info",
        requests_total=REQUESTS,
        concurrency=4,
        timeout=10,
        identity=Identity(fields=("hostname", "ip")),
        new_connections=True,
    )
    answered_by = [name.split(" ") for name in result.counts]
    for hostname, ip in answered_by:
        assert ip in replicas.get(hostname, set()), f"{hostname}/{ip} is not a running replica"
    silent = set(replicas) - {hostname for hostname, _ in answered_by}
    assert not silent, f"silent replicas: {silent}"
    # No errors, five replicas, each within 0.5x to 1.5x of an even share.
    assert unmet_expectations(result, Expectations(replicas=5, tolerance=0.5)) == []
    assert result.requests == REQUESTS


def test_response_names_its_replica_and_request(stack, session):
    response = session.get(f"{stack.url}/info", headers={"X-Request-ID": "trace-0123456789"})
    body = response.json()
    assert response.headers["X-Served-By"] == body["hostname"]
    assert response.headers["X-Upstream-Addr"] == f"{body['ip']}:8000"
    assert response.headers["X-Request-ID"] == body["request_id"] == "trace-0123456789"
    assert "nginx/" not in response.headers.get("Server", "")


def test_unknown_path_through_nginx_is_json_404(stack, session):
    response = session.get(f"{stack.url}/does-not-exist")
    assert response.status_code == 404
    assert response.json()["status"] == 404
