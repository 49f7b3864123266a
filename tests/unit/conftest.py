import pytest

from gateway import create_app


@pytest.fixture
def drain_flag(tmp_path):
    """Where this test's app looks for gunicorn's draining flag."""
    return tmp_path / "draining"


@pytest.fixture
def app(drain_flag, tmp_path):
    """An app configured for tests."""
    return create_app(
        {
            "TESTING": True,
            "GATEWAY_DRAIN_FLAG": str(drain_flag),
            # Not the host's /dev/shm, which other processes on the machine may share.
            "GATEWAY_FAULT_FILE": str(tmp_path / "fault"),
            "GATEWAY_MESSAGE": "hello acme",
        }
    )


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()
