"""The Dockerfile's stages: the test stage fails the build on a failure, the last one is lean.

`docker build --target test .` runs the Python lint and the unit tests in the replicas' own
environment; here a copy of the project is broken on purpose (a failing unit test, a lint
error) and the build of its test stage must fail, naming what broke. The image the stack
runs (the last stage) must carry no test or build tool.
"""

import re

import docker
import pytest
import yaml
from conftest import copy_of_project

FAILING_TEST = """

def test_broken_on_purpose():
    assert "the test stage" == "passes anyway"
"""
UNUSED_VARIABLE = """

def broken_on_purpose():
    unused = "ruff finds this"
"""
# Each way to break the copy: (the file, what is appended to it, what the build log names).
BREAKAGES = {
    "a failing unit test": (
        "tests/unit/test_gateway.py",
        FAILING_TEST,
        # That test, and only it: every other unit test passed in the image.
        [r"FAILED tests/unit/test_gateway\.py::test_broken_on_purpose", r"\b1 failed, \d+ passed"],
    ),
    "a lint error": ("gateway.py", UNUSED_VARIABLE, [r"F841.*Local variable `unused` is assigned"]),
}
# A build step, and the layer the (legacy) builder committed for it.
STEP = re.compile(r"^Step \d+/\d+ : ", re.MULTILINE)
LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$", re.MULTILINE)
# What the replicas' Python can import of the tools the build stages use.
TOOLS_PROBE = (
    "import importlib.util as u;"
    "print([m for m in ('pip', 'pytest', 'ruff', 'setuptools') if u.find_spec(m)])"
)


def layers_made(log):
    """The layers a build committed itself (not its bases, not from the cache), oldest first."""
    made = []
    for step in STEP.split(log)[1:]:
        if not step.startswith("FROM") and " ---> Using cache" not in step:
            made += LAYER.findall(step)
    return made


@pytest.fixture(scope="module")
def built_layers(docker_client):
    """The layers this module's builds made: removed at its end, newest first.

    The second build takes the first one's dependency layers from the cache; only once
    neither needs them are they removed (each after the layers built on it). A layer that
    another build on the engine has used as its cache meanwhile is in use, and stays.
    """
    layers = []
    yield layers
    for layer in reversed(layers):
        try:
            docker_client.images.remove(layer, noprune=True)
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: another image is built on it
                raise


def build_arguments(stack):
    """The build arguments Compose passes for the app (PYTHON_IMAGE from .env)."""
    config = yaml.safe_load(stack.compose("config").stdout)
    return config["services"]["app"]["build"].get("args", {})


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_test_stage_fails_the_build_on(breakage, stack, built_layers, tmp_path):
    path, appended, named = BREAKAGES[breakage]
    folder = copy_of_project(tmp_path)
    with (folder / path).open("a") as broken:
        broken.write(appended)
    log = ""
    try:
        stack.docker.images.build(
            path=str(folder),
            target="test",
            buildargs=build_arguments(stack),
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as error:
        log = "".join(chunk.get("stream", "") for chunk in error.build_log)
        print(log[-3000:])
        assert "returned a non-zero code" in error.msg, error.msg
    else:
        pytest.fail(f"the test stage built with {breakage}")
    finally:
        built_layers += layers_made(log)
    for pattern in named:
        assert re.search(pattern, log), f"the build log does not name {breakage}: {pattern}"


def test_the_image_the_stack_runs_carries_no_test_or_build_tool(stack):
    (replica, *_) = stack.containers("app")
    probe = replica.exec_run(["python3", "-c", TOOLS_PROBE])
    assert probe.exit_code == 0, probe.output
    assert probe.output.decode().strip() == "[]"
    image = replica.image
    # What the replicas need is there, and runs as it did from the one-stage build.
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.attrs["Config"]["WorkingDir"] == "/app"
    assert image.attrs["Config"]["Cmd"][0] == "gunicorn"
    print(f"\nthe stack's image: {image.attrs['Size'] / 1e6:.1f} MB")
