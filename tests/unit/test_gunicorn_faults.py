"""Real gunicorn with two workers: a fault holds for the replica, whatever worker answers."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from real_gunicorn import ROOT, real_gunicorn


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn.conf.py with two workers; yields (url, port, process, environment)."""
    with real_gunicorn(tmp_path, GUNICORN_ACCESS_LOG="false") as running:
        yield running


def fault_command(env, *args):
    """The command `make fault` runs inside a replica, here beside the local gunicorn."""
    return subprocess.run(
        [sys.executable, "gateway_faults.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def answers(url, count=80):
    """(status, pid or None) of `count` concurrent GET /info, each on a new connection."""

    def get(_):
        response = requests.get(f"{url}/info", headers={"Connection": "close"}, timeout=10)
        body = response.json()
        return response.status_code, body.get("pid")

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(get, range(count)))


def test_a_fault_holds_for_every_worker_and_heals(gunicorn):
    url, _, _, env = gunicorn
    # Until both workers have answered: then both take requests, and both must see the
    # fault for every answer to be 503. (One gevent worker may accept a whole burst.)
    before = []
    while len({pid for _, pid in before}) < 2 and len(before) < 800:
        before += answers(url)
    assert {status for status, _ in before} == {200}
    assert len({pid for _, pid in before}) == 2, f"one worker answered all {len(before)}"

    assert fault_command(env, "set", "unavailable", "--for", "1m").returncode == 0
    time.sleep(0.3)  # each worker looks at the switch at most every CHECK_INTERVAL (0.1 s)
    during = answers(url, 200)
    assert {status for status, _ in during} == {503}

    assert fault_command(env, "heal").returncode == 0
    time.sleep(0.3)
    assert {status for status, _ in answers(url)} == {200}


def test_crash_makes_gunicorn_exit_non_zero(gunicorn):
    url, port, server, env = gunicorn
    done = fault_command(env, "set", "crash", "--port", str(port))
    assert done.returncode == 0, done.stderr
    # A worker exited with WORKER_BOOT_ERROR, so the master halted with the same code:
    # in a container that is PID 1 exiting, and the restart policy takes over.
    assert server.wait(timeout=30) == 3
    assert not Path(env["GATEWAY_FAULT_FILE"]).exists()
