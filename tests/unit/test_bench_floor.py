"""The benchmark's server floor stands in for the Flask app, so it must pass as one."""

import importlib.util
import json
from pathlib import Path

import pytest
from werkzeug.test import Client

FLOOR_APP = Path(__file__).resolve().parents[2] / "bench/setups/server-floor/floor_app.py"


@pytest.fixture
def client():
    spec = importlib.util.spec_from_file_location("floor_app", FLOOR_APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Client(module.app)


# /healthz is what the image's HEALTHCHECK asks; /info is what make bench loads.
@pytest.mark.parametrize("path", ["/healthz", "/info"])
def test_floor_answers_json_where_the_stack_is_asked(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert int(response.headers["Content-Length"]) == len(response.data)
    assert json.loads(response.data)["status"] == "ok"
