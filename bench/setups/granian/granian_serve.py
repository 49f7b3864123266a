"""PID 1 of a granian replica: the gunicorn duties granian has no hook for.

gunicorn.conf.py drains on SIGTERM: /readyz answers 503 for GATEWAY_DRAIN_SECONDS while
the replica still serves, then the server stops gracefully. Granian stops at once on
SIGTERM, so this runs it as a child and does the same: on SIGTERM it marks the replica
draining, waits, then passes SIGTERM on and waits for granian's graceful stop. It also
clears the drain flag and a fault switched on before a restart, as gunicorn's
on_starting does.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

drain_seconds = float(os.environ.get("GATEWAY_DRAIN_SECONDS", 2))
drain_flag = pathlib.Path(os.environ.get("GATEWAY_DRAIN_FLAG", "/dev/shm/gateway-draining"))
fault_file = pathlib.Path(os.environ.get("GATEWAY_FAULT_FILE", "/dev/shm/gateway-fault"))
access_log = os.environ.get("GUNICORN_ACCESS_LOG", "true").lower() == "true"

# One worker process, as the stack's gunicorn runs: five replicas share two cores.
COMMAND = [
    "granian",
    "--interface", "wsgi",
    "--factory",
    "--host", "0.0.0.0",
    "--port", "8000",
    "--workers", "1",
    # Granian's default lets a WSGI worker start up to 512 Python threads: under 50
    # connections it hit the replica's pids_limit (128), a runtime thread could not be
    # spawned, the worker panicked and Docker restarted the replica (the 2026-12-03
    # runs). Four threads, and at most 64 requests taken in at once per replica.
    "--blocking-threads", "4",
    "--backpressure", "64",
    "--workers-kill-timeout", "20",
    "--access-log" if access_log else "--no-access-log",
    "gateway:create_app",
]  # fmt: skip


def main():
    drain_flag.unlink(missing_ok=True)
    fault_file.unlink(missing_ok=True)
    server = subprocess.Popen(COMMAND)

    def drain_then_stop(signum, frame):
        print(f"SIGTERM: not ready, draining for {drain_seconds}s", file=sys.stderr)
        drain_flag.touch()
        time.sleep(drain_seconds)
        server.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, drain_then_stop)
    signal.signal(signal.SIGINT, lambda signum, frame: server.send_signal(signal.SIGINT))
    sys.exit(server.wait())


if __name__ == "__main__":
    main()
