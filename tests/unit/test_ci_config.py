"""GitHub's workflow and .ci/run call the same make targets, and each one exists.

GitHub Actions cannot run here, so the workflow is held to .ci/run, which does run: a
target added to one and not the other, or renamed in the Makefile, fails this test.
"""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/ci.yml"
# `make TARGET`, after any VAR=value arguments and options.
MAKE_CALL = re.compile(r"\bmake\s+(?:(?:-\S+|[A-Z_]+=\S*)\s+)*([a-z0-9][a-z0-9-]*)")


def workflow_commands():
    """Every `run:` command of every job in the workflow."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


def make_targets(commands):
    """The make targets the commands call."""
    return {target for command in commands for target in MAKE_CALL.findall(command)}


def ci_run_targets():
    """The make targets .ci/run calls (its commands, not its comments)."""
    lines = (ROOT / ".ci/run").read_text().splitlines()
    return make_targets(line for line in lines if not line.lstrip().startswith("#"))


def makefile_targets():
    """The targets the Makefile defines."""
    return set(re.findall(r"^([a-z0-9][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_the_workflow_calls_the_targets_ci_run_calls():
    on_github = make_targets(workflow_commands())
    assert on_github, "the workflow calls no make target"
    assert on_github == ci_run_targets()


def test_every_target_called_exists_in_the_makefile():
    called = make_targets(workflow_commands()) | ci_run_targets()
    assert called - makefile_targets() == set()


def test_the_target_pattern_reads_make_calls_as_written():
    commands = ["make lint", "sudo env X=1 make --no-print-directory test", "make A=b up"]
    assert make_targets(commands) == {"lint", "test", "up"}
    assert make_targets(["make"]) == set()


def test_every_job_is_bounded_and_fails_on_a_skip():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow["env"]["CI"] == "true"
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["cancel-in-progress"] is True
    for name, job in workflow["jobs"].items():
        assert job["timeout-minutes"] > 0, name
        checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
        assert checkout["with"]["persist-credentials"] is False, name
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
