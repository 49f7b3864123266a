"""A replica's health, readiness and shutdown, observed in real containers."""

import time

READYZ = (
    "import urllib.request, urllib.error\n"
    "try:\n"
    "    print(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status)\n"
    "except urllib.error.HTTPError as error:\n"
    "    print(error.code)\n"
)


def test_every_container_is_healthy(stack):
    for container in stack.containers("app") + stack.containers("nginx"):
        assert container.attrs["State"]["Health"]["Status"] == "healthy", container.name


def test_readiness_turns_503_on_sigterm_before_shutdown(stack):
    replica = stack.containers("app")[0]
    assert replica.exec_run(["python3", "-c", READYZ]).output.strip() == b"200"
    replica.kill(signal="SIGTERM")
    # gunicorn keeps serving for GATEWAY_DRAIN_SECONDS (2 s) with /readyz at 503.
    time.sleep(0.3)
    assert replica.exec_run(["python3", "-c", READYZ]).output.strip() == b"503"
    # gunicorn exits 0 after draining. Docker counts `docker kill` as a stop by hand,
    # so the restart policy leaves it down (a crash is restarted: see the chaos tests).
    assert replica.wait(timeout=60)["StatusCode"] == 0
    replica.start()
    stack.wait_until_healthy()
