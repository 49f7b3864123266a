"""`make bench` keeps working: its quick mode runs end to end and writes what it promises.

Only that it runs is checked here, never how fast anything was: the numbers belong to
`make bench` on a quiet machine, not to a test.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert measured == {"stack", "baseline", "floor"}
    assert all(point["requests"] > 0 for point in report["points"])
    assert "stack ÷ baseline, requests/s" in report["ratios"]
    assert "stack ÷ server floor, requests/s" in report["ratios"]
    # Every goal also shows the server floor's figure, where one applies.
    requests_goal = next(goal for goal in report["goals"] if "requests/s" in goal[0])
    assert requests_goal[3].endswith("×")

    table = (tmp_path / "latest.md").read_text()
    assert "| this stack | 10 |" in table
    assert "| seed baseline | 10 |" in table
    assert "| server floor | 10 |" in table
    assert (tmp_path / "latest.png").read_bytes().startswith(PNG_SIGNATURE)

    # Nothing the run started is left behind.
    for setup in report["setups"]:
        label = f"com.docker.compose.project={setup['project']}"
        assert not docker_client.containers.list(all=True, filters={"label": label})
        assert not docker_client.networks.list(filters={"label": label})
