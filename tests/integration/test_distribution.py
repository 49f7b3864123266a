"""Requests through nginx land on every running replica, and only on them."""

import collections

REQUESTS = 300


def replicas_by_hostname(stack):
    """Ask the engine which app replicas run: hostname -> (container name, its IP)."""
    replicas = {}
    for container in stack.containers("app"):
        networks = container.attrs["NetworkSettings"]["Networks"].values()
        replicas[container.attrs["Config"]["Hostname"]] = {n["IPAddress"] for n in networks}
    return replicas


def test_requests_reach_every_replica(stack, session):
    replicas = replicas_by_hostname(stack)
    assert len(replicas) == 5, f"expected 5 running replicas, Docker has {sorted(replicas)}"

    answers = collections.Counter()
    for _ in range(REQUESTS):
        response = session.get(f"{stack.url}/info", timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert body["ip"] in replicas.get(body["hostname"], set()), (
            f"{body['hostname']}/{body['ip']} is not a running replica"
        )
        answers[body["hostname"]] += 1

    assert set(answers) == set(replicas), f"silent replicas: {set(replicas) - set(answers)}"
    even_share = REQUESTS / len(replicas)
    for hostname, count in answers.items():
        assert 0.5 * even_share <= count <= 1.5 * even_share, f"{hostname}: {count} of {REQUESTS}"


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
