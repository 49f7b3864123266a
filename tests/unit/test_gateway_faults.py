"""Faults through Flask's test client: what each does, what it spares, how it ends."""

import os
import time

import pytest

import gateway_faults
from gateway import create_app
from gateway_faults import Fault, FaultSwitch, RandomFaults, parse_duration

# Every method a client could try; HEAD and OPTIONS are answered by Flask itself.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@pytest.fixture(autouse=True)
def switch_looks_every_time(monkeypatch):
    """The app's switch reads the file on every request, so a test sees a change at once."""
    monkeypatch.setattr(gateway_faults, "CHECK_INTERVAL", 0)


@pytest.fixture
def fault_file(tmp_path):
    """Where this test's app and command line keep the switch."""
    return tmp_path / "fault"


@pytest.fixture
def faulty(fault_file, drain_flag):
    """A test client of an app whose switch is `fault_file`, and a function that sets it."""
    app = create_app(
        {
            "TESTING": True,
            "GATEWAY_FAULT_FILE": str(fault_file),
            "GATEWAY_DRAIN_FLAG": str(drain_flag),
        }
    )
    switch = FaultSwitch(str(fault_file))

    def set_fault(kind, ms=0, seconds=60):
        switch.set(Fault(kind, ms, time.time() + seconds))

    return app.test_client(), set_fault


@pytest.fixture
def slept(monkeypatch):
    """Record the faults' sleeps instead of sleeping."""
    durations = []
    monkeypatch.setattr(gateway_faults.time, "sleep", durations.append)
    return durations


def statuses(client, paths=("/info", "/nowhere", "/healthz", "/readyz", "/metrics")):
    return {path: client.get(path).status_code for path in paths}


def test_no_fault_by_default(faulty):
    client, _ = faulty
    assert statuses(client) == {
        "/info": 200,
        "/nowhere": 404,
        "/healthz": 200,
        "/readyz": 200,
        "/metrics": 200,
    }


@pytest.mark.parametrize(("kind", "status"), [("unavailable", 503), ("error", 500)])
def test_failing_faults_answer_json_and_name_the_replica(faulty, kind, status):
    client, set_fault = faulty
    set_fault(kind)
    response = client.get("/info")
    assert response.status_code == status
    assert response.get_json() == {
        "error": "Service Unavailable" if status == 503 else "Internal Server Error",
        "status": status,
        "message": f"fault: {kind}",
    }
    # balance-check and the page attribute the error to the replica by this header.
    assert response.headers["X-Served-By"]
    # Probes and metrics keep telling the truth about the process.
    assert statuses(client) == {
        "/info": status,
        "/nowhere": status,
        "/healthz": 200,
        "/readyz": 200,
        "/metrics": 200,
    }


def test_fault_answers_are_counted_in_the_metrics(faulty):
    client, set_fault = faulty
    set_fault("error")
    client.get("/info")
    metrics = client.get("/metrics").text
    assert 'gateway_http_requests_total{endpoint="/info",status="500"} 1.0' in metrics


def test_unready_turns_only_readiness_503(faulty):
    client, set_fault = faulty
    set_fault("unready")
    assert client.get("/readyz").get_json() == {"status": "unready"}
    assert statuses(client) == {
        "/info": 200,
        "/nowhere": 404,
        "/healthz": 200,
        "/readyz": 503,
        "/metrics": 200,
    }


def test_slow_delays_the_apps_answers_only(faulty, slept):
    client, set_fault = faulty
    set_fault("slow", ms=300)
    assert client.get("/info").status_code == 200
    assert slept == [0.3]
    client.get("/healthz")
    client.get("/readyz")
    assert slept == [0.3]


def test_hang_holds_the_request_until_the_fault_is_healed(faulty, fault_file, monkeypatch):
    client, set_fault = faulty
    set_fault("hang")
    polls = []

    def heal_on_the_third_poll(seconds):
        polls.append(seconds)
        if len(polls) == 3:
            fault_file.unlink()

    monkeypatch.setattr(gateway_faults.time, "sleep", heal_on_the_third_poll)
    assert client.get("/info").status_code == 200
    assert polls == [gateway_faults.HANG_POLL] * 3
    # The probes never waited.
    set_fault("hang")
    assert client.get("/healthz").status_code == 200
    assert len(polls) == 3


def test_crash_exits_the_process_with_gunicorns_boot_error_code(faulty, fault_file, monkeypatch):
    client, set_fault = faulty
    exits = []
    monkeypatch.setattr(gateway_faults.os, "_exit", exits.append)
    set_fault("crash")
    # Any request, a probe too: the command line sends /healthz to make it happen at once.
    client.get("/healthz")
    assert exits == [3]
    assert not fault_file.exists(), "a restarted replica would crash again"


def test_a_fault_heals_by_itself_when_its_time_is_up(faulty):
    client, set_fault = faulty
    set_fault("unavailable", seconds=-1)
    assert client.get("/info").status_code == 200


def test_the_switch_is_read_at_most_once_per_interval(fault_file, monkeypatch):
    monkeypatch.setattr(gateway_faults, "CHECK_INTERVAL", 60)
    reader = FaultSwitch(str(fault_file))
    assert reader.current() is None
    FaultSwitch(str(fault_file)).set(Fault("error", until=time.time() + 60))
    # Within the interval the cached answer stands; a stat per request would cost more
    # than the request's own work inside a container (docs/faults.md).
    assert reader.current() is None
    reader._next_check = 0
    assert reader.current().kind == "error"


def test_a_file_the_switch_did_not_write_means_no_fault(fault_file):
    fault_file.write_text("not json")
    assert FaultSwitch(str(fault_file)).current() is None


def test_random_errors_and_delays_from_settings(fault_file, drain_flag, monkeypatch, slept):
    app = create_app(
        {
            "TESTING": True,
            "GATEWAY_FAULT_FILE": str(fault_file),
            "GATEWAY_DRAIN_FLAG": str(drain_flag),
            "GATEWAY_RANDOM_ERROR_RATE": "0.05",
            "GATEWAY_RANDOM_DELAY_MS": "20-60",
        }
    )
    client = app.test_client()
    draws = iter([0.01, 0.5, 0.049, 0.05])
    monkeypatch.setattr(gateway_faults.random, "random", lambda: next(draws))
    answers = [client.get("/info") for _ in range(4)]
    assert [answer.status_code for answer in answers] == [500, 200, 500, 200]
    assert answers[0].get_json()["message"] == "random fault (GATEWAY_RANDOM_ERROR_RATE)"
    assert len(slept) == 4 and all(0.02 <= seconds <= 0.06 for seconds in slept)
    # Probes are spared: they would otherwise fail Docker's health check at random.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert len(slept) == 4


@pytest.mark.parametrize(
    ("rate", "delay", "expected"),
    [
        ("0", "", RandomFaults(0.0, None)),
        ("", None, RandomFaults(0.0, None)),
        ("0.05", "20-200", RandomFaults(0.05, (20, 200))),
        ("1", "50", RandomFaults(1.0, (50, 50))),
        ("0", " 0 - 0 ", RandomFaults(0.0, None)),
    ],
)
def test_random_fault_settings(rate, delay, expected):
    assert RandomFaults.from_settings(rate, delay) == expected
    assert bool(expected) == (expected.error_rate > 0 or expected.delay_ms is not None)


@pytest.mark.parametrize(
    ("rate", "delay", "named"),
    [
        ("5%", "", "GATEWAY_RANDOM_ERROR_RATE"),
        ("1.5", "", "GATEWAY_RANDOM_ERROR_RATE"),
        ("-0.1", "", "GATEWAY_RANDOM_ERROR_RATE"),
        ("0", "200-20", "GATEWAY_RANDOM_DELAY_MS"),
        ("0", "fast", "GATEWAY_RANDOM_DELAY_MS"),
    ],
)
def test_bad_random_fault_settings_stop_the_replica_with_the_variables_name(rate, delay, named):
    with pytest.raises(ValueError, match=named):
        RandomFaults.from_settings(rate, delay)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("1h", 3600), ("500ms", 0.5), ("45", 45)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "10x", "-5s", "forever"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_no_request_can_set_a_fault(faulty, fault_file):
    """Every route and a guess at every control path, with every method: the switch stays off."""
    client, _ = faulty
    routes = [rule.rule for rule in client.application.url_map.iter_rules()]
    guesses = ["/fault", "/faults", "/fault/crash", "/chaos", "/readyz/disable", "/status/500"]
    for path in routes + guesses:
        for method in METHODS:
            for query in ("", "?kind=crash&fault=crash"):
                response = client.open(
                    path + query,
                    method=method,
                    json={"kind": "crash", "fault": "crash"},
                    headers={"X-Fault": "crash"},
                )
                assert response.status_code < 500, (method, path, response.status_code)
    assert not fault_file.exists()
    assert statuses(client)["/info"] == 200


def test_command_line_sets_shows_and_heals(fault_file, monkeypatch, capsys):
    monkeypatch.setenv("GATEWAY_FAULT_FILE", str(fault_file))
    monkeypatch.setenv("GATEWAY_RANDOM_ERROR_RATE", "0.05")
    assert gateway_faults.main(["set", "slow", "--ms", "250", "--for", "30s"]) == 0
    assert capsys.readouterr().out.startswith("slow 250 ms, heals by itself in ")
    fault = FaultSwitch(str(fault_file)).current()
    assert (fault.kind, fault.ms) == ("slow", 250)
    assert 29 < fault.until - time.time() <= 30
    assert gateway_faults.main(["show"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("slow 250 ms") and "random faults: 5.0% of answers are errors" in shown
    assert gateway_faults.main(["heal"]) == 0
    assert not fault_file.exists()
    assert gateway_faults.main(["show"]) == 0
    assert capsys.readouterr().out.startswith("healthy")


def test_command_line_gives_every_fault_a_duration(fault_file, monkeypatch):
    monkeypatch.setenv("GATEWAY_FAULT_FILE", str(fault_file))
    gateway_faults.main(["set", "error"])
    fault = FaultSwitch(str(fault_file)).current()
    assert fault.until - time.time() == pytest.approx(gateway_faults.DEFAULT_DURATION, abs=5)


def test_command_line_refuses_a_bad_duration(fault_file, monkeypatch, capsys):
    monkeypatch.setenv("GATEWAY_FAULT_FILE", str(fault_file))
    assert gateway_faults.main(["set", "error", "--for", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err
    assert not fault_file.exists()


def test_switch_replaces_the_file_atomically(fault_file):
    switch = FaultSwitch(str(fault_file))
    switch.set(Fault("error"))
    first = os.stat(fault_file).st_ino
    switch.set(Fault("slow", 10))
    # A new file took the name: a reader never sees half of one.
    assert os.stat(fault_file).st_ino != first
    assert [name for name in os.listdir(fault_file.parent) if name.startswith(".gateway")] == []
