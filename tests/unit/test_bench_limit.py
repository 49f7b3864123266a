"""The limit and the breakdown in bench/analysis.py, on made-up counters."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import analysis  # noqa: E402 - bench/ is not a package; run.py imports it the same way

HOST = {"interrupts_s": 0.5, "docker_proxy_s": 0.1, "wrk_s": 0.2}


def point(setup, services, requests=1000, seconds=2.0):
    return {"setup": setup, "c": 50, "requests": requests, "seconds": seconds,
            "cpu_s_per_1k": 1000 * sum(s["cpu_s"] for s in services.values()) / requests,
            "services": services, "host": HOST}  # fmt: skip


def used(cpu, user=1, kernel=1):
    return {"cpu_s": cpu, "user_s": user, "kernel_s": kernel,
            "throttled_s": 0.01, "context_switches": 3000}  # fmt: skip


STACK = [point("stack", {"app": used(1.0, user=3, kernel=1), "nginx": used(0.2)})] * 2
# 0.05 CPU s/s in the replicas and 0.01 in nginx with no load: over 2 × 2 s of load
# and 2,000 requests, 0.1 + 0.02 ms per request.
IDLE = {"stack": {"app": 0.05, "nginx": 0.01}, "proxy-floor": {"nginx": 0.01}}
PROFILE = {"shares": {"gevent": 0.3, "gunicorn (x)": 0.2, "Flask and Werkzeug": 0.3,
                      "metrics (x)": 0.1, "other (Python)": 0.1}}  # fmt: skip


def test_breakdown_adds_up_to_the_stack_and_charges_idle_cpu_to_healthchecks():
    found = analysis.breakdown(STACK, IDLE, PROFILE, 50)
    rows = dict(found["rows"])
    assert found["total_ms"] == pytest.approx(1.2)  # (1.0 + 0.2) s per 1,000 requests
    assert rows["healthchecks and idle timers (CPU with no load, scaled)"] == pytest.approx(0.12)
    assert rows["nginx (its container)"] == pytest.approx(0.2 - 0.02)
    # The replicas' 1.0 ms less 0.1 idle: a quarter kernel (1 tick of 4), the rest by profile.
    assert rows["replicas, kernel (system calls, TCP, in their cgroups)"] == pytest.approx(0.225)
    assert rows["replicas: server layer (gunicorn, gevent)"] == pytest.approx(0.675 * 0.5)
    assert rows["replicas: Flask and Werkzeug"] == pytest.approx(0.675 * 0.3)
    assert found["per_service"]["app"]["context_switches"] == pytest.approx(3)
    assert dict(found["outside"])["docker-proxy (the published port)"] == pytest.approx(0.1)


def test_limit_is_flask_in_process_plus_the_proxy_floors_nginx():
    floor = [point("proxy-floor", {"nginx": used(0.1), "upstream": used(0.01)})]
    flask = {"ms_per_call": {"this app": 0.2}}
    setups = [type("Setup", (), {"name": "stack", "label": "this stack"})]
    found = analysis.limit(STACK + floor, setups, {}, IDLE, flask, PROFILE, 50)
    # The front nginx: 0.1 ms per request less its idle 0.01 CPU s/s over 2 s.
    assert found["nginx_ms"] == pytest.approx(0.1 - 0.02)
    assert found["limit_ms"] == pytest.approx(0.28)
    assert found["per_setup"][0]["x_limit"]["median"] == pytest.approx(1.2 / 0.28)


def test_levers_are_compared_with_the_stack():
    def setup(name, label):
        return type("Setup", (), {"name": name, "label": label, "flask": True, "peer": False})

    setups = [setup("stack", "this stack"), setup("gc-freeze", "gc lever")]
    points = [
        {"setup": "stack", "c": 50, "repeat": 0, "rps": 100, "p99_ms": 10, "cpu_s_per_1k": 2},
        {"setup": "gc-freeze", "c": 50, "repeat": 0, "rps": 150, "p99_ms": 5, "cpu_s_per_1k": 1},
    ]
    found = {r["name"]: r["median"] for r in analysis.ratios(points, setups, {}, 50)}
    assert found == {
        "gc lever ÷ this stack, requests/s": 1.5,
        "gc lever ÷ this stack, p99": 0.5,
        "gc lever ÷ this stack, CPU per request": 0.5,
    }


def test_a_point_with_a_restart_keeps_no_cpu_and_fails_the_errors_goal():
    # measure_point's shape when a container restarted: its cgroup counters began again
    # at zero, so the CPU figures are dropped (a negative CPU per request once came of it).
    setups = [type("Setup", (), {"name": "stack", "label": "this stack", "flask": True,
                                 "peer": False})]  # fmt: skip
    fine = point("stack", {"app": used(1.0)}) | {"repeat": 0, "rps": 500, "p50_ms": 5,
                                                  "p95_ms": 9, "p99_ms": 10, "errors": 0,
                                                  "restarted": []}  # fmt: skip
    broken = fine | {"repeat": 1, "cpu_s_per_1k": None, "services": None, "host": None,
                     "restarted": ["benchstack-app-3"]}  # fmt: skip
    summary = analysis.summarise([fine, broken], setups, [50])
    assert summary["stack", 50]["cpu_s_per_1k"]["max"] == fine["cpu_s_per_1k"]
    assert summary["stack", 50]["restarts"] == 1
    assert analysis.breakdown([fine, broken], IDLE, PROFILE, 50)["requests"] == 1000
    # A lever's ratio to the stack skips the repeat with no CPU figure.
    lever = [{"setup": "gc-freeze", "c": 50, "repeat": r, "rps": 600, "p99_ms": 9,
              "cpu_s_per_1k": 0.5} for r in (0, 1)]  # fmt: skip
    both = setups + [type("Setup", (), {"name": "gc-freeze", "label": "gc lever",
                                        "flask": True, "peer": False})]  # fmt: skip
    ratios = {r["name"]: r for r in analysis.ratios([fine, broken, *lever], both, summary, 50)}
    assert ratios["gc lever ÷ this stack, CPU per request"]["median"] == 0.5
    assert ratios["gc lever ÷ this stack, requests/s"]["max"] == 1.2
    rows = {row[0]: row for row in analysis.goals(setups, summary, [], {}, 50)}
    goal, measured, met, why = rows["zero errors everywhere"]
    assert not met and "1 container restart(s)" in why


def test_steal_is_the_share_of_the_machines_cpu_time_taken_by_the_hypervisor():
    # Two CPUs for 2 s = 4 CPU-seconds; 1 s of steal is a quarter, whatever the setup.
    points = [{"seconds": 2.0, "host": HOST | {"steal_s": 1.0}},
              {"seconds": 2.0, "host": HOST | {"steal_s": 0.2}},
              {"seconds": 2.0, "host": None}]  # fmt: skip
    found = analysis.steal(points, cpus=2)
    assert (found["min"], found["max"]) == (pytest.approx(0.05), pytest.approx(0.25))


def test_report_only_refuses_a_file_that_is_not_a_run_with_a_clear_message(tmp_path):
    import subprocess

    (tmp_path / "other.json").write_text("{}")
    for path, said in ((tmp_path / "missing.json", "cannot read a run's report"),
                       (tmp_path / "other.json", "not a make bench report")):  # fmt: skip
        found = subprocess.run([sys.executable, BENCH / "run.py", "--report-only", path],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert found.returncode == 1 and said in found.stderr
