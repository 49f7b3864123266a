"""Faults switched on one replica under steady traffic through nginx, counted request by request.

Each scenario runs SteadyTraffic (six clients, GET /info back to back, a new connection per
request) while scripts/fault.sh, the command behind `make fault`, switches one of five
replicas into a fault and heals it; the test prints what it measured and asserts what nginx
must make of it. The random-fault test runs a small stack of its own; the switch's boundary
is tried through nginx's public port. Run them alone with `pytest -m faults`.
"""

import re
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests
from conftest import ROOT, extra_stack, fault
from scipy.stats import binom, binomtest
from waits import serves_through_nginx, wait_for

import balance_check
from balance_check.sampling import send_requests
from balance_check.statistics import summarize
from balance_check.traffic import SteadyTraffic

pytestmark = [pytest.mark.chaos, pytest.mark.faults]
REPORT_TITLE = "fault scenarios"

REPLICAS = 5
CLIENTS = 6
# The stack's defaults (docker-compose.yml): the bounds below are derived from them.
NGINX_READ_TIMEOUT = 5
NGINX_FAIL_TIMEOUT = 5
NGINX_RESOLVE_SECONDS = 2
# A worker looks at the switch at most this often (gateway_faults.CHECK_INTERVAL, 0.1 s),
# with room for the request that was being routed as the switch flipped.
SWITCH_DELAY = 0.5
CLOSE = {"Connection": "close"}


def states(stack):
    """Each replica's fault, as `make faults` shows it."""
    done = subprocess.run(
        [ROOT / "scripts/fault.sh", "all", "show"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.splitlines()


@pytest.fixture(autouse=True)
def healthy_afterwards(breakable):
    """Each scenario ends with every replica healed and five healthy ones, whatever it broke."""
    yield
    subprocess.run(
        [ROOT / "scripts/fault.sh", "all", "heal"], cwd=ROOT, env=breakable.env, timeout=120
    )
    breakable.compose("up", "-d", "--no-deps", "--scale", f"app={REPLICAS}", "app")
    breakable.wait_until_healthy()


@pytest.fixture
def sick(breakable):
    """The replica this scenario makes sick: (container, hostname, nginx's name for it)."""
    replica = breakable.containers("app")[0]
    (address,) = [n["IPAddress"] for n in replica.attrs["NetworkSettings"]["Networks"].values()]
    wait_for(lambda: serves_through_nginx(breakable, replica), timeout=60, what="serving")
    return replica, replica.attrs["Config"]["Hostname"], f"{address}:8000"


def share(outcomes, hostname):
    """The replica's share of the answers that named a replica, and how many that was."""
    named = [o for o in outcomes if o.served_by]
    return sum(o.served_by == hostname for o in named) / max(1, len(named)), len(named)


def between(load, start, end):
    return [o for o in load.outcomes if start <= o.started < end]


def shares_line(load, hostname, windows):
    parts = []
    for name, (start, end) in windows.items():
        fraction, count = share(between(load, start, end), hostname)
        parts.append(f"{name} {fraction:.1%} of {count}")
    return "its share " + ", ".join(parts)


def moved_off(outcomes, address):
    """Requests nginx tried on `address` first and answered from another replica."""
    return [o for o in outcomes if address in o.tried[:-1]]


def fault_under_load(stack, replica, kind, seconds):
    """Steady traffic; `kind` switched on in `replica` for `seconds`, healed, and traffic
    until nginx has forgiven it. (load, set started, set, heal started, healed, back), the
    times from time.monotonic()."""
    with SteadyTraffic(f"{stack.url}/info", clients=CLIENTS) as load:
        load.run_for(3)
        set_started = fault(stack, replica, "set", kind, "--for", "2m")
        set_at = time.monotonic()
        load.run_for(seconds)
        heal_started = fault(stack, replica, "heal")
        healed_at = time.monotonic()
        wait_for(lambda: serves_through_nginx(stack, replica), timeout=60, what="back")
        back_at = time.monotonic()
        load.run_for(NGINX_FAIL_TIMEOUT + 1)
    return load, set_started, set_at, heal_started, healed_at, back_at


def test_unavailable_replica_leaves_rotation_and_returns_after_heal(breakable, sick, report):
    replica, hostname, address = sick
    load, set_started, set_at, heal_started, healed_at, back_at = fault_under_load(
        breakable, replica, "unavailable", 12
    )
    windows = {
        "before": (load.began, set_at - 2),
        "during": (set_at + SWITCH_DELAY, heal_started),
        "after": (healed_at + NGINX_FAIL_TIMEOUT + 1, load.ended),
    }
    during = between(load, *windows["during"])
    # From the moment the switch may have flipped until the heal surely did.
    moved = moved_off(between(load, set_started, healed_at), address)
    report(
        load.summary("unavailable (503) on 1 of 5 replicas, healed after 12 s")
        + f"; {shares_line(load, hostname, windows)}; {len(moved)} requests moved off it;"
        + f" served again {back_at - healed_at:.1f} s after the heal"
    )
    # nginx retried every 503 on another replica (proxy_next_upstream http_503).
    assert load.failures == []
    # Not one answer from the sick replica while the fault held: its share is nothing...
    assert len(during) > 100, "too little traffic to judge"
    assert share(during, hostname)[0] == 0
    # ...and nginx stopped trying it: the requests in flight as it failed (one per client
    # at most), then one probe per NGINX_FAIL_TIMEOUT (max_fails=1).
    probes_allowed = CLIENTS + (healed_at - set_started) / NGINX_FAIL_TIMEOUT + 2
    assert 1 <= len(moved) <= probes_allowed, f"{len(moved)} requests were tried on it"
    # Healed: back in rotation with at least half an even share, as test_distribution asks.
    after_share, after_count = share(between(load, *windows["after"]), hostname)
    assert after_count > 100, "too little traffic to judge"
    assert after_share >= 0.5 / REPLICAS, f"{after_share:.1%} after the heal"


def test_hung_replica_costs_latency_bounded_by_the_read_timeout(breakable, sick, report):
    replica, hostname, address = sick
    load, set_started, set_at, heal_started, healed_at, _ = fault_under_load(
        breakable, replica, "hang", 2 * NGINX_READ_TIMEOUT + NGINX_FAIL_TIMEOUT
    )
    windows = {
        "before": (load.began, set_at - 2),
        # A request sent to the hung replica less than NGINX_READ_TIMEOUT before the heal
        # may be answered by it once healed: its fate was not sealed while the fault held.
        "during": (set_at + SWITCH_DELAY, heal_started - NGINX_READ_TIMEOUT),
        "after": (healed_at + NGINX_FAIL_TIMEOUT + 1, load.ended),
    }
    during = between(load, *windows["during"])
    # Every request that met the hung replica, from the first after the switch flipped.
    moved = moved_off(load.outcomes, address)
    others = [o for o in during if o not in moved]
    slowest = max((o.seconds for o in moved), default=0)
    report(
        load.summary("hang on 1 of 5 replicas for 15 s")
        + f"; {shares_line(load, hostname, windows)}; {len(moved)} requests waited out the"
        + f" read timeout (slowest {slowest:.2f} s); the other {len(others)}: max"
        + f" {max((o.seconds for o in others), default=0):.2f} s"
    )
    assert load.failures == []
    assert share(during, hostname)[0] == 0
    # The cost is latency only, and bounded: each request that met the hung replica waited
    # NGINX_READ_TIMEOUT, then was answered by the next replica it was tried on. None
    # waited for two timeouts, which would be a second hung replica or a missed retry.
    assert moved, "no request met the hung replica"
    assert all(o.tried[-2] == address and len(o.tried) == 2 for o in moved)
    assert all(NGINX_READ_TIMEOUT - 0.1 <= o.seconds < 2 * NGINX_READ_TIMEOUT for o in moved)
    probes_allowed = CLIENTS + (healed_at - set_started) / NGINX_FAIL_TIMEOUT + 2
    assert len(moved) <= probes_allowed


def test_slow_replica_gets_a_smaller_share_from_least_conn(breakable, sick, report):
    replica, hostname, _ = sick
    with SteadyTraffic(f"{breakable.url}/info", clients=CLIENTS) as load:
        load.run_for(5)
        fault(breakable, replica, "set", "slow", "--ms", "300", "--for", "2m")
        set_at = time.monotonic()
        load.run_for(15)
        heal_started = fault(breakable, replica, "heal")
        healed_at = time.monotonic()
        load.run_for(5)
    windows = {
        "before": (load.began, set_at - 2),
        "during": (set_at + SWITCH_DELAY, heal_started),
        "after": (healed_at + SWITCH_DELAY, load.ended),
    }
    during = between(load, *windows["during"])
    its = [o for o in during if o.served_by == hostname]
    slow_share, named = share(during, hostname)
    # One-sided binomial test against an even share: "measurably smaller" at p < 0.001.
    p_value = binomtest(len(its), named, 1 / REPLICAS, alternative="less").pvalue
    report(
        load.summary("slow (300 ms) on 1 of 5 replicas for 15 s")
        + f"; {shares_line(load, hostname, windows)}; p = {p_value:.1e} against an even share"
    )
    assert load.failures == []
    # Every answer it gave while slow waited the 300 ms: the fault held for each.
    assert its, "the slow replica got no request at all"
    assert all(o.seconds >= 0.3 for o in its)
    # least_conn passes over a replica that still holds a request: a much smaller share.
    assert p_value < 0.001, f"{slow_share:.1%} of {named} is not clearly below an even share"


def test_error_replica_500s_reach_the_client_and_are_attributed_to_it(breakable, sick, report):
    replica, hostname, _ = sick
    with SteadyTraffic(f"{breakable.url}/info", clients=CLIENTS) as load:
        load.run_for(3)
        set_started = fault(breakable, replica, "set", "error", "--for", "2m")
        time.sleep(SWITCH_DELAY)
        # The checker users point at any balancer, alongside the steady traffic.
        checked = balance_check.check(
            f"{breakable.url}/info", requests_total=300, concurrency=4, new_connections=True
        )
        fault(breakable, replica, "heal")
        healed_at = time.monotonic()
        load.run_for(3)
    rows = {row.name: row for row in checked.replicas}
    report(
        load.summary("error (500) on 1 of 5 replicas")
        + f"; balance-check: {checked.failed} of {checked.requests} failed,"
        + f" {rows[hostname].errors} of them from the sick replica, which answered"
        + f" {rows[hostname].share:.1%}"
    )
    # A 500 is the application's answer: nginx passes it on and does not retry it...
    failures = load.failures
    assert failures, "no 500 reached the client"
    assert {(o.status, o.served_by) for o in failures} == {(500, hostname)}
    assert all(set_started <= o.started < healed_at + SWITCH_DELAY for o in failures)
    # ...and balance-check names the replica that gave each one, and no other.
    assert checked.errors == {"HTTP 500": checked.failed}
    assert rows[hostname].errors == rows[hostname].count == checked.failed
    assert all(row.errors == 0 for name, row in rows.items() if name != hostname)
    assert checked.unattributed == 0
    # A 500 is no passive-health failure (not in proxy_next_upstream): it keeps its share.
    assert rows[hostname].count >= 0.5 * checked.requests / REPLICAS


def exit_codes(docker_client, container, since):
    """The exit codes Docker recorded for this container's deaths since `since`."""
    events = docker_client.events(
        since=since,
        until=datetime.now(UTC),
        filters={"container": container.id, "event": "die"},
        decode=True,
    )
    return [event["Actor"]["Attributes"].get("exitCode") for event in events]


def test_crashed_replica_exits_non_zero_and_is_back_serving(breakable, sick, report):
    replica, hostname, _ = sick
    restarts = replica.attrs["RestartCount"]
    since = datetime.now(UTC)
    with SteadyTraffic(f"{breakable.url}/info", clients=CLIENTS) as load:
        load.run_for(3)
        # scripts/fault.sh returns once Docker has seen the replica exit.
        fault(breakable, replica, "set", "crash")
        crashed_at = time.monotonic()
        wait_for(lambda: serves_through_nginx(breakable, replica), what="restarted, serving")
        back_at = time.monotonic()
        load.run_for(3)
    replica.reload()
    codes = exit_codes(breakable.docker, replica, since)
    report(
        load.summary("crash of 1 of 5 replicas")
        + f"; exit codes {codes}; serving through nginx {back_at - crashed_at:.1f} s after"
    )
    # The process exited with gunicorn's WORKER_BOOT_ERROR, and the restart policy acted.
    assert codes == ["3"]
    assert replica.attrs["RestartCount"] == restarts + 1
    # As the chaos suite allows for a crash: only answers already begun can be cut off.
    cut_off = [f for f in load.failures if f.error and "IncompleteRead" in f.error]
    assert cut_off == load.failures, "a failure other than an answer cut off by the crash"
    assert len(load.failures) <= load.clients


def test_unready_replica_keeps_its_share_behind_compose_nginx(breakable, sick, report):
    replica, hostname, _ = sick
    fault(breakable, replica, "set", "unready", "--for", "2m")
    time.sleep(SWITCH_DELAY)
    ready = replica.exec_run(
        ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz')"]
    )
    checked = balance_check.check(f"{breakable.url}/info", requests_total=300, concurrency=4)
    replica.reload()
    rows = {row.name: row for row in checked.replicas}
    report(
        f"unready on 1 of 5 replicas: /readyz exit {ready.exit_code}; balance-check"
        f" {checked.failed} of {checked.requests} failed, its share {rows[hostname].share:.1%};"
        f" Docker health {replica.attrs['State']['Health']['Status']}"
    )
    # /readyz says 503 (urllib raises, exit status 1)...
    assert ready.exit_code == 1 and b"503" in ready.output
    # ...but nginx here does not read readiness: the replica keeps serving its share, and
    # Docker's health check (liveness, /healthz) keeps it healthy.
    assert checked.failed == 0
    assert rows[hostname].count >= 0.5 * checked.requests / REPLICAS
    assert replica.attrs["State"]["Health"]["Status"] == "healthy"


def test_make_demo_tells_what_happened_to_the_replica_it_made_sick(breakable, report):
    """scripts/demo.py (make demo), as the README shows it: one replica unavailable, healed."""
    url = f"http://127.0.0.1:{breakable.env['GATEWAY_PORT']}/info"
    # A replica by its Compose number, as a user picks it from `make faults`: after the chaos
    # scenarios have scaled the stack up and down the numbers need not start at 1.
    replica = breakable.containers("app")[-1]
    number = replica.labels["com.docker.compose.container-number"]
    options = ["--replica", number, "--sick", "6", "--url", url]
    demo = subprocess.run(
        [sys.executable, ROOT / "scripts/demo.py", *options],
        cwd=ROOT,
        env=breakable.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert demo.returncode == 0, demo.stderr
    (summary,) = [line for line in demo.stdout.splitlines() if line.startswith("in all: ")]
    report(f"make demo: {summary.removeprefix('in all: ')}")
    # The replica it names is the one asked for, as the engine reports it...
    sick = replica.attrs["Config"]["Hostname"]
    assert f"what happened to app {number} ({sick})" in demo.stdout
    # ...and nginx moved every request off it: none failed, and it served again after.
    assert ", 0 failed;" in summary and "served again" in summary, demo.stdout
    # Its share while sick: only answers in flight as the switch flipped (a replica reads the
    # switch at most every 0.1 s), against 20 % when healthy.
    sent, failed, share = re.search(
        r"unavailable \(make fault\)\s+\d+\s+(\d+)\s+(\d+)\s+([\d.]+)%", demo.stdout
    ).groups()
    assert int(sent) > 100 and failed == "0" and float(share) < 2.0, demo.stdout


# --- The switch is never public -------------------------------------------------------

CONTROL_PATHS = [
    # What a fault switch is usually called, podinfo's among them.
    "/fault",
    "/faults",
    "/fault/crash",
    "/fault/slow/300",
    "/faults/set",
    "/chaos",
    "/_fault",
    "/admin/fault",
    "/debug/fault",
    "/api/fault",
    "/readyz/disable",
    "/healthz/disable",
    "/status/500",
    "/delay/5",
    "/panic",
    "/gateway_faults",
    "/gateway_faults.py",
    "/dev/shm/gateway-fault",
    # The same, spelled otherwise: case, slashes, percent-encoding, double encoding,
    # parameters and a trailing dot.
    "/FAULT",
    "/fault/",
    "//fault",
    "/%66ault",
    "/%66%61%75%6c%74/crash",
    "/fault%2Fcrash",
    "/%2566ault",
    "/fault;kind=crash",
    "/fault.",
    "/fault?kind=crash",
    "/info/../fault",
    "/readyz/%64isable",
]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def test_fault_controls_are_not_reachable_through_the_public_port(breakable, report):
    restarts = {c.id: c.attrs["RestartCount"] for c in breakable.containers("app")}
    answers = {}
    with requests.Session() as http:
        http.headers.update({**CLOSE, "X-Fault": "crash"})
        for path in CONTROL_PATHS:
            for method in METHODS:
                response = http.request(
                    method,
                    f"{breakable.url}{path}",
                    json={"kind": "crash", "replica": "all", "for": "1h"},
                    timeout=30,
                )
                answers[(method, path)] = response.status_code
        # Fault words on the real routes: they are served as usual, nothing more.
        ordinary = [
            http.get(f"{breakable.url}/info?fault=crash&kind=error", timeout=30).status_code,
            http.get(f"{breakable.url}/readyz?disable=1", timeout=30).status_code,
            http.post(f"{breakable.url}/readyz", json={"ready": False}, timeout=30).status_code,
        ]
    unexpected = {attempt: code for attempt, code in answers.items() if code not in (404, 405)}
    tally = Counter(answers.values())
    report(
        f"{len(answers)} attempts on the public port: "
        + ", ".join(f"{count} × {code}" for code, count in sorted(tally.items()))
    )
    assert unexpected == {}
    assert ordinary == [200, 200, 405]
    # Nothing changed: every replica healthy, none restarted, all of them serving.
    assert all(line.endswith(": healthy") for line in states(breakable)), states(breakable)
    assert {c.id: c.attrs["RestartCount"] for c in breakable.containers("app")} == restarts
    result = balance_check.check(f"{breakable.url}/info", requests_total=100, concurrency=4)
    assert result.failed == 0 and len(result.replicas) == REPLICAS


# --- Deployment-wide random faults, from settings --------------------------------------

RANDOM_ERROR_RATE = 0.05
RANDOM_REQUESTS = 2000
RANDOM_DELAY_MS = (10, 30)


@pytest.fixture(scope="module")
def random_fault_stack(stack):
    """A second, two-replica stack of the same image with random faults switched on."""
    delay = "{}-{}".format(*RANDOM_DELAY_MS)
    settings = {"GATEWAY_RANDOM_ERROR_RATE": str(RANDOM_ERROR_RATE)}
    with extra_stack(
        stack, "random", APP_REPLICAS="2", GATEWAY_RANDOM_DELAY_MS=delay, **settings
    ) as randomly:
        yield randomly


def test_random_error_rate_is_the_setting_within_binomial_tolerance(random_fault_stack, report):
    # 2,000 requests at 5 %: 100 errors expected, standard deviation 9.7. The central
    # 99.9 % of Binomial(2000, 0.05) is 69..133 errors (3.45 % .. 6.65 %): a correct
    # implementation fails this test about once in a thousand runs.
    low, high = binom.interval(0.999, RANDOM_REQUESTS, RANDOM_ERROR_RATE)
    url = f"{random_fault_stack.url}/info"
    samples = send_requests(url, requests_total=RANDOM_REQUESTS, concurrency=8)
    result = summarize(samples, url=url, named_by="hostname", concurrency=8, seconds=0)
    errors = result.errors.get("HTTP 500", 0)
    quickest = min(sample.seconds for sample in samples)
    report(
        f"random faults (rate {RANDOM_ERROR_RATE:.0%}, delay {RANDOM_DELAY_MS[0]}-"
        f"{RANDOM_DELAY_MS[1]} ms): {errors} of {result.requests} answers were 500"
        f" ({errors / result.requests:.2%}; tolerance {low:.0f}..{high:.0f});"
        f" by replica {[row.errors for row in result.replicas]};"
        f" quickest answer {quickest * 1000:.1f} ms"
    )
    # Every failure is a replica's 500, attributed to it; nginx lost nothing.
    assert result.requests == RANDOM_REQUESTS
    assert set(result.errors) == {"HTTP 500"} and result.unattributed == 0
    assert low <= errors <= high
    # Both replicas err at random, not one of them.
    assert len(result.replicas) == 2 and all(row.errors > 0 for row in result.replicas)
    # Every answer, error or not, waited at least the least random delay.
    assert quickest >= RANDOM_DELAY_MS[0] / 1000
    # The probes are spared: Docker still finds both replicas healthy.
    assert all(
        c.attrs["State"]["Health"]["Status"] == "healthy"
        for c in random_fault_stack.containers("app")
    )
