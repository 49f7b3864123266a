import os
import socket
from datetime import datetime

from flask import url_for

import service
from gateway import DEFAULTS, __version__, create_app, settings_from_environment


def test_factory_reads_the_environment(monkeypatch):
    monkeypatch.setenv("APP_VERSION", "9.9.9")
    monkeypatch.setenv("GATEWAY_MESSAGE", "welcome")
    assert settings_from_environment()["APP_VERSION"] == "9.9.9"
    assert create_app().config["GATEWAY_MESSAGE"] == "welcome"


def test_factory_defaults_work_without_environment(monkeypatch):
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    body = create_app().test_client().get("/info").get_json()
    assert body["version"] == __version__
    assert body["message"] is None


def test_info_says_which_replica_answered(client):
    response = client.get("/info", headers={"X-Request-ID": "req-12345678"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["hostname"] == socket.gethostname()
    assert response.headers["X-Served-By"] == body["hostname"]
    assert body["pid"] == os.getpid()
    assert body["version"] == __version__
    assert body["request_id"] == "req-12345678"
    assert body["message"] == "hello acme"
    assert body["uptime_seconds"] >= 0
    started = datetime.fromisoformat(body["started_at"])
    served = datetime.fromisoformat(body["served_at"])
    assert started <= served
    assert started.utcoffset().total_seconds() == 0


def test_info_reports_own_address(client):
    ip = client.get("/info").get_json()["ip"]
    assert ip is None or socket.inet_aton(ip)


def test_info_fields_are_exactly_the_documented_ones(client):
    assert list(client.get("/info").get_json()) == [
        "hostname",
        "ip",
        "pid",
        "version",
        "started_at",
        "uptime_seconds",
        "served_at",
        "request_id",
        "client",
        "url",
        "message",
    ]


def test_client_address_trusts_exactly_one_proxy_hop(client):
    # nginx appends the address it saw; anything the client put before it is a claim.
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}
    body = client.get("/info", headers=headers, environ_base={"REMOTE_ADDR": "172.18.0.9"})
    assert body.get_json()["client"] == "203.0.113.7"


def test_urls_the_app_builds_follow_the_forwarded_scheme_and_host():
    # nginx sends what the client used: https on the TLS port, and the port it published.
    app = create_app({"TESTING": True})

    @app.get("/link")
    def link():
        return {"info": url_for("info", _external=True)}

    client = app.test_client()
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "localhost:8443"}
    assert client.get("/link", headers=headers).get_json()["info"] == (
        "https://localhost:8443/info"
    )
    assert client.get("/info", headers=headers).get_json()["url"] == ("https://localhost:8443/info")


def test_plain_requests_build_plain_urls(client):
    assert client.get("/info").get_json()["url"] == "http://localhost/info"


def test_client_address_without_proxy_is_the_peer(client):
    body = client.get("/info", environ_base={"REMOTE_ADDR": "10.1.2.3"}).get_json()
    assert body["client"] == "10.1.2.3"


def test_info_never_leaks_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "AKIA-very-secret")
    client = create_app({"TESTING": True}).test_client()
    for path in ("/info", "/healthz", "/readyz", "/missing"):
        text = client.get(path).get_data(as_text=True)
        assert "hunter2-secret" not in text
        assert "AKIA-very-secret" not in text


def test_healthz_is_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ready_until_draining(client, drain_flag):
    assert client.get("/readyz").status_code == 200
    drain_flag.touch()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "draining"}
    # Liveness does not change while draining: the replica is alive, just leaving.
    assert client.get("/healthz").status_code == 200


def test_unknown_path_is_json_404(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "Not Found"


def test_wrong_method_is_json_405_with_allow(client):
    response = client.post("/info")
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert response.get_json()["status"] == 405
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_json_500_without_traceback(app):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal Server Error", "status": 500}
    assert "secret internals" not in response.get_data(as_text=True)


def test_your_routes_in_service_are_registered(client):
    assert client.application.blueprints["service"] is service.blueprint
