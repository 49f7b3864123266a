"""make demo: against the running stack, make one replica sick under steady traffic, heal it,
and print what happened: requests sent and failed, the sick replica's share before, during
and after, and the requests nginx moved away from it.

The fault is switched with scripts/fault.sh, the command `make fault` runs, and always with
a duration, so an interrupted demo leaves no replica sick for long.
Options: --kind (default unavailable), --replica (default 1), --sick (seconds, default 15),
--ms (slow, default 300), --clients (default 6), --url (default
http://localhost:$GATEWAY_PORT/info, the port from the environment or .env).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from balance_check.traffic import SteadyTraffic

ROOT = Path(__file__).resolve().parents[1]
FAULT = [str(ROOT / "scripts/fault.sh")]
# Each client sends at most this many requests per second: steady traffic that leaves the
# machine room to spare, so what the table shows is the fault, not an overloaded host.
PER_CLIENT_RATE = 40
# After a heal nginx may still skip the replica for NGINX_FAIL_TIMEOUT (5 s by default).
AFTER_SECONDS = 10
BEFORE_SECONDS = 5

# What nginx does with each fault, in one sentence for the end of the demo.
STORY = {
    "unavailable": "nginx retried each request that met the sick replica's 503 on another "
    "replica (proxy_next_upstream http_503) and left it out for NGINX_FAIL_TIMEOUT between "
    "tries; the clients saw none of it.",
    "hang": "each request that met the hung replica waited NGINX_READ_TIMEOUT, then nginx "
    "retried it on another replica and left the hung one out; the cost was latency, not errors.",
    "slow": "least_conn sent fewer requests to the replica that held each one longer; "
    "nothing failed, the slow answers show in the latency.",
    "error": "a 500 is the application's answer: nginx passed it to the client (it retries "
    "only 502, 503, 504 and connection errors), and X-Served-By names the replica that gave it.",
    "unready": "/readyz answered 503 but Compose's nginx does not read readiness: the replica "
    "kept its share (Kubernetes would take it out of the Service's endpoints).",
    "crash": "the replica exited with code 3, Docker's restart policy started it again, and "
    "nginx retried the requests that met it while it was down.",
}


def default_url():
    port = os.environ.get("GATEWAY_PORT")
    env_file = ROOT / ".env"
    if not port and env_file.exists():
        found = re.findall(r"^GATEWAY_PORT=(\d+)\s*$", env_file.read_text(), re.MULTILINE)
        port = found[-1] if found else None
    return f"http://localhost:{port or 8000}/info"


def fault(*args):
    """Run scripts/fault.sh; return its output lines, or stop the demo with its error."""
    done = subprocess.run([*FAULT, *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"demo: scripts/fault.sh {' '.join(args)} failed:\n{done.stderr.strip()}")
    return done.stdout.strip().splitlines()


def replicas():
    """{number: hostname} of the running app replicas, from scripts/fault.sh's own listing."""
    lines = fault("all", "show")
    return {
        int(match[1]): match[2]
        for match in (re.match(r"app (\d+) \((\w+)\)", line) for line in lines)
        if match
    }


def address_of(outcomes, hostname):
    """The sick replica's address as nginx names it: the last upstream of its own answers."""
    for outcome in outcomes:
        if outcome.served_by == hostname and outcome.tried:
            return outcome.tried[-1]
    return None


def phase_row(name, outcomes, hostname, address, seconds):
    named = [o for o in outcomes if o.served_by]
    its = [o for o in named if o.served_by == hostname]
    moved = [o for o in outcomes if address and address in o.tried[:-1]]
    failed = [o for o in outcomes if not o.ok]
    latencies = sorted(o.seconds * 1000 for o in outcomes)
    p50 = statistics.median(latencies) if latencies else 0
    return [
        name,
        f"{seconds:.0f}",
        str(len(outcomes)),
        str(len(failed)),
        f"{len(its) / len(named):.1%}" if named else "-",
        str(len(moved)),
        f"{p50:.0f}",
        f"{max(latencies, default=0):.0f}",
    ]


def print_table(rows):
    header = ["phase", "s", "sent", "failed", "its share", "moved off it", "p50 ms", "max ms"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        print("  " + "  ".join(cells))


def main(argv=None):
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--kind", default="unavailable", choices=sorted(STORY))
    options.add_argument("--replica", type=int, default=1, help="Compose number (default 1)")
    options.add_argument("--sick", type=float, default=15, help="seconds sick (default 15)")
    options.add_argument("--ms", type=int, default=300, help="slow: delay (default 300)")
    options.add_argument("--clients", type=int, default=6)
    options.add_argument("--url", default=default_url())
    args = options.parse_args(argv)

    running = replicas()
    if args.replica not in running:
        sys.exit(f"demo: no app replica {args.replica}; running: {sorted(running)} (make up?)")
    hostname = running[args.replica]
    try:
        requests.get(args.url, timeout=10).raise_for_status()
    except requests.RequestException as error:
        sys.exit(f"demo: {args.url} does not answer ({error}); is the stack up (make up)?")
    sick_name = f"app {args.replica} ({hostname})"
    plan = (
        f"then {sick_name} crashes; {AFTER_SECONDS} s more once Docker has restarted it"
        if args.kind == "crash"
        else f"{args.sick:.0f} s with {sick_name} {args.kind}, healed, {AFTER_SECONDS} s more"
    )
    print(
        f"demo: {len(running)} replicas at {args.url}; {args.clients} clients × "
        f"{PER_CLIENT_RATE} GET/s, a new connection each\n"
        f"demo: {BEFORE_SECONDS} s healthy, {plan}",
        flush=True,
    )
    set_args = ["set", args.kind, "--for", f"{args.sick + 30:.0f}s"]
    if args.kind == "slow":
        set_args += ["--ms", str(args.ms)]

    crash = args.kind == "crash"
    marks = {}
    try:
        with SteadyTraffic(args.url, args.clients, rate=PER_CLIENT_RATE) as traffic:
            time.sleep(BEFORE_SECONDS)
            marks["fault"] = time.monotonic()
            for line in fault(str(args.replica), *set_args):
                print(f"  make fault: {line}", flush=True)
            # For crash, scripts/fault.sh returns once Docker has restarted the replica.
            marks["sick"] = time.monotonic()
            if not crash:
                time.sleep(args.sick)
                marks["heal"] = time.monotonic()
                for line in fault(str(args.replica), "heal"):
                    print(f"  make heal:  {line}", flush=True)
            marks["healed"] = time.monotonic()
            time.sleep(AFTER_SECONDS)
            marks["end"] = time.monotonic()
    finally:
        if not crash and "healed" not in marks:
            fault(str(args.replica), "heal")

    outcomes = sorted(traffic.outcomes, key=lambda o: o.finished)
    address = address_of(outcomes, hostname)

    def between(start, end):
        # By when the answer came: a request sent to a hung replica just before the heal
        # is answered by it after the heal, and belongs there.
        return [o for o in outcomes if start <= o.finished < end]

    began = min((o.started for o in outcomes), default=marks["fault"])
    # The seconds that `make fault` and `make heal` take (docker exec) are in the totals
    # only: the fault holds from when the first returns until the second does.
    if crash:
        phases = [
            ("healthy", began, marks["fault"]),
            ("crash, until restarted", marks["fault"], marks["sick"]),
            ("restarted", marks["sick"], marks["end"]),
        ]
    else:
        phases = [
            ("healthy", began, marks["fault"]),
            (f"{args.kind} (make fault)", marks["sick"], marks["heal"]),
            ("healed (make heal)", marks["healed"], marks["end"]),
        ]
    print(f"what happened to {sick_name}, address {address or 'unknown'}:")
    print_table(
        [
            phase_row(name, between(start, end), hostname, address, end - start)
            for name, start, end in phases
        ]
    )
    back = [o for o in between(marks["healed"], marks["end"]) if o.served_by == hostname and o.ok]
    failed = [o for o in outcomes if not o.ok]
    print(
        f"in all: {len(outcomes)} requests, {len(failed)} failed"
        + (f" ({', '.join(sorted({str(o.status) for o in failed}))})" if failed else "")
        + (
            f"; {sick_name} served again {back[0].finished - marks['healed']:.1f} s after "
            + ("it was restarted." if crash else "the heal.")
            if back
            else f"; {sick_name} did not serve again within {AFTER_SECONDS} s."
        )
    )
    print(f"{STORY[args.kind]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
