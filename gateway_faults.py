"""Faults a replica can be switched into at run time, and random faults from settings.

The switch is a small JSON file on /dev/shm (tmpfs: writable though the root filesystem is
read-only, and shared by every gunicorn worker of the container, so the fault holds for
the whole replica whatever worker answers). Only this module's command line writes it,
run inside the container through the Docker engine:

    python3 gateway_faults.py set slow --ms 300 --for 30s     (make fault, scripts/fault.sh)
    python3 gateway_faults.py heal
    python3 gateway_faults.py show

No HTTP route reads or writes the switch: a request can only suffer a fault, never set
one (docs/faults.md, "Why the switch is never public").
"""

import argparse
import contextlib
import json
import os
import random
import re
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

DEFAULT_FAULT_FILE = "/dev/shm/gateway-fault"

# What each fault does to the replica; the command line's help shows this too.
KINDS = {
    "unavailable": "the app's routes answer 503",
    "error": "the app's routes answer 500",
    "slow": "the app's routes wait --ms milliseconds before answering",
    "hang": "the app's routes never answer until the fault ends",
    "unready": "/readyz answers 503; everything else serves as usual",
    "crash": "the replica's process exits with code 3; Docker's restart policy starts it again",
}

# A forgotten fault must not live forever: without --for it ends after ten minutes.
DEFAULT_DURATION = 600.0

# Probes and metrics keep telling the truth about the process, as podinfo's fault switch
# keeps its probes healthy: the faults are in the app's answers. `unready` and `crash`
# are the exceptions, by what they are.
SPARED_ENDPOINTS = frozenset({"healthz", "readyz", "metrics"})

# gunicorn's master halts, exiting with this same code, when a worker exits with it
# (Arbiter.WORKER_BOOT_ERROR). The master is PID 1, which ignores SIGKILL sent from inside
# its own PID namespace: the worker's exit status is the way to end it from within.
CRASH_EXIT_CODE = 3

# How often a worker looks at the switch file. A request between two looks costs one
# clock read: the check measured 0.1 µs, where an os.stat of the file cost 25 to 40 µs
# inside a container here (docs/faults.md), a third of a whole /info. So a busy worker
# pays at most ten stats a second, and a fault set or healed takes effect within 0.1 s.
CHECK_INTERVAL = 0.1

# A hung request looks at the switch this often, to answer once the fault ends.
HANG_POLL = 0.25


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, the delay of `slow`, and when it ends (epoch seconds)."""

    kind: str
    ms: int = 0
    until: float | None = None

    def ended(self, now=None):
        return self.until is not None and (time.time() if now is None else now) >= self.until

    def describe(self, now=None):
        """Say what the replica does, in a few words."""
        now = time.time() if now is None else now
        what = f"slow {self.ms} ms" if self.kind == "slow" else self.kind
        if self.until is None:
            return what
        if self.ended(now):
            return f"healthy ({what} ended {now - self.until:.0f} s ago)"
        return f"{what}, heals by itself in {self.until - now:.0f} s"


def parse_duration(text):
    """Seconds from '30s', '2m', '1h', '500ms' or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m, 1h or 500ms")
    value, unit = float(match[1]), match[2] or "s"
    seconds = value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be more than 0")
    return seconds


class FaultSwitch:
    """The replica's fault, read from a file that every worker of the container sees."""

    def __init__(self, path=DEFAULT_FAULT_FILE, check_interval=None):
        self.path = path
        self.check_interval = CHECK_INTERVAL if check_interval is None else check_interval
        self._next_check = float("-inf")
        self._stamp = None
        self._fault = None

    def current(self):
        """The fault in force now, or None; cheap enough for every request."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_interval
            self._reload()
        fault = self._fault
        if fault is not None and fault.until is not None and fault.ended():
            return None
        return fault

    def _reload(self):
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._stamp = self._fault = None
            return
        # The file is replaced, never rewritten in place: a new inode or mtime is a new fault.
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp != self._stamp:
            self._stamp = stamp
            self._fault = self.read()

    def read(self):
        """The fault in the file, ended or not; None when there is none."""
        try:
            with open(self.path) as file:
                return Fault(**json.load(file))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            # A file this module did not write: no fault, rather than a broken replica.
            return None

    def set(self, fault):
        """Switch the replica into `fault`, atomically: a reader sees the old or the new one."""
        folder = os.path.dirname(self.path) or "."
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".gateway-fault-")
        try:
            with os.fdopen(descriptor, "w") as file:
                json.dump(asdict(fault), file)
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise
        self._next_check = float("-inf")

    def clear(self):
        """Heal the replica."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._next_check = float("-inf")


@dataclass(frozen=True)
class RandomFaults:
    """Deployment-wide random faults (podinfo's --random-error / --random-delay)."""

    error_rate: float = 0.0
    delay_ms: tuple[int, int] | None = None

    @classmethod
    def from_settings(cls, error_rate, delay_ms):
        """From GATEWAY_RANDOM_ERROR_RATE ('0.05') and GATEWAY_RANDOM_DELAY_MS ('20-200')."""
        try:
            rate = float(error_rate or 0)
        except ValueError:
            rate = -1.0
        if not 0 <= rate <= 1:
            raise ValueError(
                f"GATEWAY_RANDOM_ERROR_RATE={error_rate!r}: a fraction from 0 to 1, e.g. 0.05"
            )
        delay = None
        if str(delay_ms or "").strip():
            match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(delay_ms))
            low, high = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
            if low > high:
                raise ValueError(
                    f"GATEWAY_RANDOM_DELAY_MS={delay_ms!r}: milliseconds MIN-MAX, e.g. 20-200"
                )
            delay = (low, high) if high > 0 else None
        return cls(rate, delay)

    def __bool__(self):
        return self.error_rate > 0 or self.delay_ms is not None

    def describe(self):
        parts = []
        if self.error_rate:
            parts.append(f"{self.error_rate:.1%} of answers are errors")
        if self.delay_ms:
            parts.append("every answer waits {}–{} ms".format(*self.delay_ms))
        return "; ".join(parts) or "off"


def fault_answer(status, name, message):
    """The JSON answer of a fault, shaped like the app's own errors."""
    return {"error": name, "status": status, "message": message}, status


def install(app, fault_file, random_faults):
    """Let `app` suffer the switch's fault and the random faults; return the switch."""
    # Imported here, not at the top: the command line (docker exec) starts without Flask,
    # about 0.1 s sooner (Flask's import time, measured on the host).
    from flask import request

    switch = FaultSwitch(fault_file)
    # Worked out once: with the random faults off (the default) a request never looks again.
    randoms_on = bool(random_faults)

    def crash():
        # Cleared first: a replica that Docker restarts starts healthy, not in a crash loop.
        switch.clear()
        app.logger.error("fault: crash: exiting with code %d", CRASH_EXIT_CODE)
        os._exit(CRASH_EXIT_CODE)

    def random_fault():
        if random_faults.delay_ms:
            time.sleep(random.randint(*random_faults.delay_ms) / 1000)
        if random_faults.error_rate and random.random() < random_faults.error_rate:
            return fault_answer(
                500, "Internal Server Error", "random fault (GATEWAY_RANDOM_ERROR_RATE)"
            )
        return None

    @app.before_request
    def suffer_fault():
        fault = switch.current()
        if fault is None and not randoms_on:
            # The path of nearly every request: one clock read, no system call.
            return None
        if fault is not None and fault.kind == "crash":
            crash()
        endpoint = request.endpoint
        if fault is not None and fault.kind == "unready":
            if endpoint == "readyz":
                return {"status": "unready"}, 503
            fault = None
        if endpoint in SPARED_ENDPOINTS:
            return None
        # `hang`: accept and never answer, until the fault ends; then whatever holds then.
        while fault is not None and fault.kind == "hang":
            time.sleep(HANG_POLL)
            fault = switch.current()
        if fault is not None:
            if fault.kind == "crash":
                crash()
            if fault.kind == "unavailable":
                return fault_answer(503, "Service Unavailable", "fault: unavailable")
            if fault.kind == "error":
                return fault_answer(500, "Internal Server Error", "fault: error")
            if fault.kind == "slow":
                time.sleep(fault.ms / 1000)
        return random_fault() if randoms_on else None

    return switch


# --- The command line, run inside the replica: docker exec, scripts/fault.sh ----------


def wait_for_exit(port, seconds=15):
    """Ask the replica for /healthz until it stops answering: a worker sees `crash` at once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
                connection.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                connection.recv(1024)
        except OSError:
            return True
        time.sleep(CHECK_INTERVAL * 2)
    return False


def command_line():
    kinds = "\n".join(f"  {kind:12} {what}" for kind, what in KINDS.items())
    commands = argparse.ArgumentParser(
        prog="gateway_faults.py",
        description="Switch this replica into a fault, heal it, or show its state.",
        epilog=f"faults:\n{kinds}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = commands.add_subparsers(dest="action", required=True)
    set_fault = actions.add_parser("set", help="switch the replica into a fault")
    set_fault.add_argument("kind", choices=KINDS)
    set_fault.add_argument("--ms", type=int, default=300, help="slow: delay (default 300)")
    set_fault.add_argument(
        "--port", type=int, default=8000, help="crash: where the replica listens (default 8000)"
    )
    set_fault.add_argument(
        "--for",
        dest="duration",
        default=f"{DEFAULT_DURATION:.0f}s",
        help="heal by itself after this long: 30s, 2m, 1h (default %(default)s)",
    )
    actions.add_parser("heal", help="end the fault now")
    actions.add_parser("show", help="print the replica's fault")
    return commands


def main(argv=None):
    args = command_line().parse_args(argv)
    switch = FaultSwitch(os.environ.get("GATEWAY_FAULT_FILE", DEFAULT_FAULT_FILE))
    if args.action == "heal":
        switch.clear()
        print("healthy")
        return 0
    if args.action == "show":
        fault = switch.read()
        print(fault.describe() if fault else "healthy", end="")
        randoms = RandomFaults.from_settings(
            os.environ.get("GATEWAY_RANDOM_ERROR_RATE"), os.environ.get("GATEWAY_RANDOM_DELAY_MS")
        )
        print(f"; random faults: {randoms.describe()}" if randoms else "")
        return 0
    try:
        duration = parse_duration(args.duration)
    except ValueError as error:
        print(f"gateway_faults.py: {error}", file=sys.stderr)
        return 2
    if args.kind == "slow" and args.ms < 1:
        print("gateway_faults.py: slow needs --ms of 1 or more", file=sys.stderr)
        return 2
    fault = Fault(args.kind, args.ms if args.kind == "slow" else 0, time.time() + duration)
    switch.set(fault)
    if args.kind == "crash":
        # Nothing happens until a worker handles a request: send it one. Docker ends this
        # process too when the replica exits, so a return from here means it did not.
        print("crash: asking the replica for a request, so that a worker sees it")
        sys.stdout.flush()
        if not wait_for_exit(args.port):
            print("crash: the replica still answers", file=sys.stderr)
            return 1
        return 0
    print(fault.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
