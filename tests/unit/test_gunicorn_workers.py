"""Real gunicorn with two workers: /metrics is the replica's sum, logs are JSON lines."""

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from real_gunicorn import real_gunicorn

MAX_REQUESTS = 400


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """gunicorn.conf.py with two workers on a free local port; yields (url, metrics dir, logs)."""
    folder = tmp_path_factory.mktemp("gunicorn")
    with real_gunicorn(folder, LOG_FORMAT="json") as (url, *_):
        yield url, folder / "metrics", (folder / "stdout", folder / "stderr")


def info_requests_counted(url):
    families = text_string_to_metric_families(requests.get(f"{url}/metrics", timeout=5).text)
    samples = (sample for family in families for sample in family.samples)
    wanted = ("gateway_http_requests_total", {"endpoint": "/info", "status": "200"})
    return next((s.value for s in samples if (s.name, s.labels) == wanted), 0)


def get_info(url, number):
    response = requests.get(
        f"{url}/info", headers={"X-Request-ID": f"unit-trace-{number:04d}"}, timeout=10
    )
    assert response.status_code == 200
    return response.json()["pid"]


def test_metrics_add_up_every_worker(gunicorn):
    url, metrics_dir, _ = gunicorn
    before = info_requests_counted(url)
    pids, sent = set(), 0
    # Concurrent requests, until both workers have answered some.
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(pids) < 2 and sent < MAX_REQUESTS:
            pids |= set(pool.map(lambda n: get_info(url, n), range(sent, sent + 40)))
            sent += 40
    assert len(pids) == 2, f"one worker answered all {sent} requests"
    assert info_requests_counted(url) - before == sent

    # A worker that dies: gunicorn replaces it, its requests still count, and its
    # in-flight gauge file is gone (child_exit -> mark_process_dead).
    dead = pids.pop()
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (metrics_dir / f"gauge_livesum_{dead}.db").exists():
        assert time.monotonic() < deadline, "the dead worker's gauge file stayed"
        time.sleep(0.1)
    assert info_requests_counted(url) - before == sent
    assert (metrics_dir / f"counter_{dead}.db").exists()


def test_every_log_line_is_json_and_access_lines_carry_the_id(gunicorn):
    url, _, (stdout, stderr) = gunicorn
    get_info(url, 9999)
    # Access lines are written in batches (gateway_logging.BatchedLines), 0.2 s apart.
    deadline = time.monotonic() + 5
    while "unit-trace-9999" not in stdout.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    access = [json.loads(line) for line in stdout.read_text().splitlines()]
    errors = [json.loads(line) for line in stderr.read_text().splitlines()]
    assert {entry["logger"] for entry in access} == {"gunicorn.access"}
    assert any(entry["message"].startswith("Booting worker") for entry in errors)
    (line,) = [entry for entry in access if entry["request_id"] == "unit-trace-9999"]
    assert (line["path"], line["status"]) == ("/info", 200)
