"""Replicas added or removed with --scale follow into nginx without a reload."""

import time


def nginx_processes(stack):
    """nginx's process ids inside its container: a reload would replace the workers."""
    (nginx,) = stack.containers("nginx")
    processes = nginx.top(ps_args="-o pid,comm")["Processes"]
    return {pid for pid, command in processes if command == "nginx"}, nginx.attrs["State"][
        "StartedAt"
    ]


def hostnames_answering(stack, session, expected, deadline_seconds=30):
    """Poll /info until `expected` hostnames have answered, or the deadline passes."""
    seen = set()
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline and not expected <= seen:
        seen.add(session.get(f"{stack.url}/info", timeout=10).json()["hostname"])
    return seen


def test_scaled_up_replicas_get_traffic_without_reload(stack, session):
    before = nginx_processes(stack)
    try:
        stack.compose("up", "-d", "--no-deps", "--scale", "app=8", "app")
        stack.wait_until_healthy()
        running = {c.attrs["Config"]["Hostname"] for c in stack.containers("app")}
        assert len(running) == 8
        seen = hostnames_answering(stack, session, running)
        assert running <= seen, f"never answered: {running - seen}"
        assert nginx_processes(stack) == before, "nginx was restarted or reloaded"
    finally:
        stack.compose("up", "-d", "--no-deps", "--scale", "app=5", "app")
        stack.wait_until_healthy()

    running = {c.attrs["Config"]["Hostname"] for c in stack.containers("app")}
    assert len(running) == 5
    # After scaling down, answers come only from the replicas that remain.
    time.sleep(3)
    answered = {session.get(f"{stack.url}/info").json()["hostname"] for _ in range(40)}
    assert answered == running
