"""Session-wide rules: under CI=true a skipped test fails the run instead of passing it.
The Docker engine, for the integration and k8s tests that run containers."""

import os

import docker
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        skipped.append(report.nodeid)


def pytest_sessionfinish(session):
    if IN_CI and skipped:
        print(f"\nCI=true: {len(skipped)} test(s) skipped, which CI counts as failure:")
        for nodeid in skipped:
            print(f"  {nodeid}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def docker_client():
    """The Docker engine; under CI=true a missing engine fails instead of skipping."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # noqa: BLE001 - any failure means "no engine"
        if IN_CI:
            pytest.fail(f"CI=true but the Docker engine is not reachable: {error}")
        pytest.skip(f"Docker engine not reachable: {error}")
    yield client
    client.close()
