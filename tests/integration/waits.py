"""Waiting for the stack under test: a condition, a replica serving through nginx."""

import time

import requests


def wait_for(condition, timeout=240, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not true after {timeout}s"
        time.sleep(0.5)


def serves_through_nginx(stack, container, attempts=20):
    """True once requests through nginx reach this container (X-Served-By is its hostname)."""
    container.reload()
    if not container.attrs["State"]["Running"]:
        return False
    hostname = container.attrs["Config"]["Hostname"]
    for _ in range(attempts):
        response = requests.get(f"{stack.url}/info", headers={"Connection": "close"}, timeout=30)
        if response.headers.get("X-Served-By") == hostname:
            return True
    return False
