"""Chaos under load: replicas crash, stop, hang, scale and roll, nginx reloads; GETs keep flowing.

Every scenario runs SteadyTraffic (concurrent GET /info through nginx, a new connection per
request) around the event, prints `sent / failed / longest gap`, and asserts that not one
request failed. nginx makes that possible: a GET that meets a dead, stopping or hung replica
is retried on the next one (proxy_next_upstream) before anything reaches the client. Run
these alone with `make chaos`.
"""

import contextlib
import os
import signal
import subprocess
import time

import pytest
import requests
from conftest import ROOT
from waits import serves_through_nginx, wait_for

from balance_check.traffic import SteadyTraffic

pytestmark = pytest.mark.chaos
REPORT_TITLE = "chaos scenarios"

REPLICAS = 5
# The stack's defaults (docker-compose.yml): the bounds below are derived from them.
NGINX_READ_TIMEOUT = 5
NGINX_FAIL_TIMEOUT = 5
NGINX_RESOLVE_SECONDS = 2
CLOSE = {"Connection": "close"}


@pytest.fixture(autouse=True)
def five_healthy_replicas(breakable):
    """Each scenario starts and ends with five healthy replicas, whatever it broke."""
    yield
    # `up` also starts replicas that were stopped by hand (docker stop / docker kill).
    breakable.compose("up", "-d", "--no-deps", "--scale", f"app={REPLICAS}", "app")
    breakable.wait_until_healthy()


def traffic(stack):
    return SteadyTraffic(f"{stack.url}/info", clients=6)


def restarted(container, restarts_before):
    container.reload()
    return container.attrs["RestartCount"] > restarts_before


def crash(container):
    """SIGKILL the replica's gunicorn from the host: a crash, which Docker's restart heals."""
    os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)


@pytest.mark.parametrize("victims", [1, 2], ids=["one", "two-at-once"])
def test_crashed_replicas_come_back_and_no_request_fails(breakable, report, victims):
    stack = breakable
    replicas = breakable.containers("app")[:victims]
    restarts = {replica.id: replica.attrs["RestartCount"] for replica in replicas}
    with traffic(breakable) as load:
        load.run_for(2)
        for replica in replicas:
            crash(replica)
        # Self-healing as a user sees it: Docker restarted it and nginx sends it requests.
        for replica in replicas:
            wait_for(
                lambda r=replica: restarted(r, restarts[r.id]) and serves_through_nginx(stack, r),
                what=f"{replica.name} restarted by Docker and serving",
            )
        load.run_for(2)
    report(load.summary(f"SIGKILL {victims} replica(s), Docker restarts them"))
    # A request in flight on a killed replica is retried on another one by nginx, unless
    # its answer had begun: gunicorn sends the status line and headers, then the body, and
    # nginx passes the headers on at once, so a kill between the two writes leaves the
    # client a cut-off answer that nothing can retry. Only those can fail, and only as many
    # as the killed replicas had requests in progress: gevent serves any number at once,
    # so at most one per client of the load.
    cut_off = [f for f in load.failures if f.error and "IncompleteRead" in f.error]
    assert cut_off == load.failures, "a failure other than an answer cut off by the kill"
    assert len(load.failures) <= load.clients


def test_docker_kill_is_a_manual_stop_and_no_request_fails(breakable, report):
    (replica, *_) = breakable.containers("app")
    with traffic(breakable) as load:
        load.run_for(2)
        replica.kill()
        load.run_for(NGINX_RESOLVE_SECONDS + 3)
    report(load.summary("docker kill 1 replica (stays down: a stop by hand)"))
    assert load.failures == []
    replica.reload()
    # Docker's restart policy ignores a container stopped through its API; `up` starts it.
    assert replica.status == "exited"


def test_sigterm_drains_in_flight_requests_and_no_request_fails(breakable, report):
    (replica, *_) = breakable.containers("app")
    with traffic(breakable) as load:
        load.run_for(2)
        # docker stop: SIGTERM to gunicorn (PID 1), /readyz 503, drain, graceful exit.
        replica.stop(timeout=30)  # the stop_grace_period, as `docker-compose stop` uses
        replica.reload()
        exit_code = replica.attrs["State"]["ExitCode"]
        replica.start()
        wait_for(lambda: serves_through_nginx(breakable, replica), what="stopped replica back")
        load.run_for(NGINX_RESOLVE_SECONDS + 1)
    report(load.summary("SIGTERM 1 replica, then start it again"))
    assert exit_code == 0, "gunicorn did not exit by itself: SIGTERM missed it or it was killed"
    assert load.failures == []


def test_scaling_5_10_3_5_loses_no_request(breakable, report):
    with traffic(breakable) as load:
        for count in (10, 3, REPLICAS):
            breakable.compose("up", "-d", "--no-deps", "--scale", f"app={count}", "app")
            breakable.wait_until_healthy()
            assert len(breakable.containers("app")) == count
            load.run_for(NGINX_RESOLVE_SECONDS + 1)
    report(load.summary("scale 5 -> 10 -> 3 -> 5"))
    assert load.failures == []


def test_rolling_restart_replaces_every_replica_and_no_request_fails(breakable, report):
    old = {replica.id for replica in breakable.containers("app")}
    with traffic(breakable) as load:
        load.run_for(1)
        subprocess.run(
            [ROOT / "scripts/rollout.sh"], cwd=ROOT, env=breakable.env, check=True, timeout=900
        )
        load.run_for(1)
    report(load.summary("rolling restart of 5 replicas (scripts/rollout.sh)"))
    new = {replica.id for replica in breakable.containers("app")}
    assert len(new) == REPLICAS
    assert not old & new, "some replicas were not replaced"
    assert load.failures == []


def nginx_processes(stack):
    """nginx's master and worker process ids (host ids)."""
    (nginx,) = stack.containers("nginx")
    processes = nginx.top(ps_args="-o pid,ppid,comm")["Processes"]
    master = str(nginx.attrs["State"]["Pid"])
    workers = {pid for pid, ppid, command in processes if ppid == master}
    return master, workers


def test_nginx_reload_loses_no_request(breakable, report):
    master, workers = nginx_processes(breakable)
    with traffic(breakable) as load:
        for _ in range(3):
            load.run_for(1)
            reload = ("exec", "-T", "nginx", "/bin/sh", "/etc/nginx/gateway/start.sh", "reload")
            breakable.compose(*reload)
        load.run_for(2)
    report(load.summary("nginx reload x3"))
    new_master, new_workers = nginx_processes(breakable)
    assert new_master == master and not workers & new_workers, "nginx did not reload"
    assert load.failures == []


def gunicorn_worker(replica):
    """The host pid of the replica's gunicorn worker (the master's only child)."""
    replica.reload()
    master = str(replica.attrs["State"]["Pid"])
    processes = replica.top(ps_args="-o pid,ppid,comm")["Processes"]
    workers = [int(pid) for pid, ppid, command in processes if ppid == master]
    # None while the master is between killing a worker and forking the next one.
    return workers[0] if len(workers) == 1 else None


def test_hung_replica_leaves_rotation_at_once_and_gunicorn_replaces_its_worker(breakable, report):
    (replica, *_) = breakable.containers("app")
    (address,) = [n["IPAddress"] for n in replica.attrs["NetworkSettings"]["Networks"].values()]
    worker = gunicorn_worker(replica)
    with traffic(breakable) as load:
        load.run_for(2)
        # A worker that stops answering: the kernel still accepts connections for it, but
        # no request gets an answer, and /healthz (Docker's healthcheck) neither.
        os.kill(worker, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            # gunicorn's master kills a worker silent for `timeout` (30 s) and forks anew.
            wait_for(
                lambda: gunicorn_worker(replica) not in (worker, None), what="hung worker replaced"
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        healed_at = time.monotonic()
        load.run_for(NGINX_FAIL_TIMEOUT + 1)
    report(load.summary("1 replica hangs (SIGSTOP) until gunicorn replaces its worker"))

    # Requests that met the hung replica waited NGINX_READ_TIMEOUT, then went to another.
    assert load.failures == []
    # After the first timeout nginx skips the replica and probes it once per fail_timeout;
    # in an even share it would have met a fifth of all requests.
    detected_at = frozen_at + NGINX_READ_TIMEOUT + 2
    while_out = [o for o in load.outcomes if detected_at < o.started < healed_at]
    tried_on_hung = [o for o in while_out if f"{address}:8000" in o.upstream]
    probes_allowed = (healed_at - detected_at) / NGINX_FAIL_TIMEOUT + 2
    assert len(while_out) > 50, "too little traffic to judge the rotation"
    assert len(tried_on_hung) <= probes_allowed, (
        f"{len(tried_on_hung)} of {len(while_out)} requests still went to the hung replica"
    )
    # Healed: nginx sends it requests again, and it answers them.
    wait_for(
        lambda: (
            requests.get(f"{breakable.url}/info", headers=CLOSE).headers.get("X-Upstream-Addr")
            == f"{address}:8000"
        ),
        timeout=60,
        what="healed replica back in rotation",
    )


def test_nginx_killed_is_restarted_by_docker_and_only_its_outage_fails(breakable, report):
    """One machine has one nginx (one host port): its crash is an outage, bounded by Docker's
    restart. The row of the README's "What happens when…" table that a cluster answers."""
    (nginx,) = breakable.containers("nginx")
    restarts = nginx.attrs["RestartCount"]
    # A rate per client: while nginx is down its port refuses at once, and back-to-back
    # clients would count thousands of refusals a second.
    with SteadyTraffic(f"{breakable.url}/info", clients=6, rate=25) as load:
        load.run_for(2)
        killed_at = time.monotonic()
        crash(nginx)  # SIGKILL to nginx's master: a crash, which the restart policy heals
        wait_for(lambda: restarted(nginx, restarts), what="nginx restarted by Docker")
        restarted_after = time.monotonic() - killed_at
        wait_for(
            lambda: any(o.ok and o.started > killed_at for o in load.outcomes),
            what="nginx serving again",
        )
        load.run_for(2)
    first_served = min(o.started for o in load.outcomes if o.ok and o.started > killed_at)
    outage = first_served - killed_at
    report(
        load.summary("SIGKILL nginx, Docker restarts it")
        + f" restarted after {restarted_after:.1f}s, serving again after {outage:.1f}s"
    )
    # Failures only in the outage: in flight at the kill, or sent before nginx served again.
    outside = [o for o in load.failures if o.finished < killed_at or o.started >= first_served]
    assert outside == [], f"failures outside the outage: {outside[:3]}"
    assert all(o.ok for o in load.outcomes if o.started >= first_served)
    assert load.failures, "killing the only nginx cost nothing: was it killed?"
