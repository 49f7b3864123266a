"""A real gunicorn with this project's gunicorn.conf.py, for the unit tests that need one."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def real_gunicorn(folder, **settings):
    """gunicorn.conf.py with two workers on a free local port, its state in `folder`.

    Yields (url, port, process, environment); its output is in folder/stdout and stderr.
    """
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
        "GATEWAY_DRAIN_FLAG": str(folder / "draining"),
        "GATEWAY_FAULT_FILE": str(folder / "fault"),
        "GATEWAY_DRAIN_SECONDS": "0",
        **settings,
    }
    env.pop("prometheus_multiproc_dir", None)
    stdout, stderr = folder / "stdout", folder / "stderr"
    with stdout.open("w") as out, stderr.open("w") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]
            + ["--bind", f"127.0.0.1:{port}", "gateway:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/healthz", timeout=2)
                break
            except requests.RequestException:  # not listening, or no worker yet
                assert server.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer in 30 s"
                time.sleep(0.1)
        yield url, port, server, env
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
