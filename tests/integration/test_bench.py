"""`make bench` keeps working: its quick mode runs end to end and writes what it promises.

Only that it runs is checked here, never how fast anything was: the numbers belong to
`make bench` on a quiet machine, not to a test.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_quick_bench_writes_table_chart_and_raw_results(docker_client, tmp_path):
    env = {**os.environ, "BENCH_QUICK": "1", "BENCH_OUTPUT": str(tmp_path)}
    env.pop("BENCH_FIRST_PORT", None)
    result = subprocess.run(
        [sys.executable, ROOT / "bench/run.py"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    report = json.loads((tmp_path / "latest.json").read_text())
    measured = {point["setup"] for point in report["points"]}
    # The quick smoke: the setups whose setup.toml says quick = true.
    assert measured == {"stack", "flask-floor", "baseline", "proxy-floor"}
    assert all(point["requests"] > 0 for point in report["points"])
    # Each point ran with every other setup stopped (their healthchecks cost CPU too).
    assert [point["others_running"] for point in report["points"]] == [0] * 4
    # Every replica of every setup answered through its front before it was measured.
    assert all(row["replicas"][0] == row["replicas"][1] > 0 for row in report["setups"])
    ratio_names = {stat["name"] for stat in report["ratios"]}
    assert "this stack ÷ seed baseline, requests/s" in ratio_names
    assert "this stack ÷ Flask floor, requests/s" in ratio_names
    # Each goal is reported as measured, met or not, and why; the peer goal names the
    # best peer and the floor's figure.
    goals = {goal: why for goal, _measured, _met, why in report["goals"]}
    assert "best peer: seed baseline" in goals["≥ 3× the best peer's requests/s"]
    assert "Flask floor" in goals["≥ 3× the best peer's requests/s"]
    assert "zero errors everywhere" in goals
    assert "Flask in-process" in goals["CPU per request ≤ 2× the limit"]

    # The limit: Flask called in-process in the app image, plus the proxy floor's nginx.
    limit = report["limit"]
    assert limit["flask"]["ms_per_call"]["this app"] > 0
    assert limit["limit_ms"] == limit["flask_ms"] + limit["nginx_ms"]
    assert {row["label"] for row in limit["per_setup"]} >= {"this stack", "nginx proxy floor"}
    # The breakdown's rows add up to what the stack's containers spent per request.
    stack_points = [p for p in report["points"] if p["setup"] == "stack"]
    spent = sum(used["cpu_s"] for p in stack_points for used in p["services"].values())
    requests = sum(p["requests"] for p in stack_points)
    breakdown = limit["breakdown"]
    assert breakdown["total_ms"] == pytest.approx(1000 * spent / requests)
    assert {"app", "nginx"} <= set(breakdown["per_service"])

    table = (tmp_path / "latest.md").read_text()
    assert "| this stack | 10 |" in table
    assert "| seed baseline | 10 |" in table
    assert "| Flask floor | 10 |" in table
    assert "## The limit, measured" in table
    assert "| **the stack's containers, total** |" in table
    assert (tmp_path / "latest.png").read_bytes().startswith(PNG_SIGNATURE)

    # The report can be written again from the run's own figures, without measuring.
    (tmp_path / "latest.md").unlink()
    again = subprocess.run(
        [sys.executable, ROOT / "bench/run.py", "--report-only", tmp_path / "latest.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert (tmp_path / "latest.md").read_text() == table

    # Nothing the run started is left behind.
    for setup in report["setups"]:
        label = f"com.docker.compose.project={setup['project']}"
        assert not docker_client.containers.list(all=True, filters={"label": label})
        assert not docker_client.networks.list(filters={"label": label})
