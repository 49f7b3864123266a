import pytest

from gateway import create_app


@pytest.fixture
def drain_flag(tmp_path):
    """Where this test's app looks for gunicorn's draining flag."""
    return tmp_path / "draining"


@pytest.fixture
def app(drain_flag):
    """An app configured for tests."""
    return create_app(
        {"TESTING": True, "GATEWAY_DRAIN_FLAG": str(drain_flag), "GATEWAY_MESSAGE": "hello acme"}
    )


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()
