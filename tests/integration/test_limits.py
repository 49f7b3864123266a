"""The shipped per-client limits: a load test from one machine is served in full, and one
client that floods with far more connections than its share cannot starve another.

Heavy: wrk makes load for about a minute (run it under `flock /tmp/heavy.lock` on a shared
machine). The figures are printed for docs/edge.md; only outcomes are asserted.
"""

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import IN_CI, ROOT

FLOOD_CONNECTIONS = 1000


def compose_default(setting):
    """The default docker-compose.yml gives a setting (`${NAME:-default}`)."""
    text = (ROOT / "docker-compose.yml").read_text()
    return re.search(rf"\$\{{{setting}:-([^}}]*)\}}", text).group(1)


def wrk(url, connections, seconds):
    """Run wrk from the host; return its counts: requests, non2xx, socket errors, and the text."""
    if not shutil.which("wrk"):
        if IN_CI:
            pytest.fail("CI=true but wrk is missing: `make bench-tools` installs it")
        pytest.skip("wrk is missing: `make bench-tools` installs it")
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    text = result.stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "text": text,
    }


@pytest.fixture(scope="module")
def as_shipped(stack):
    """The session's stack, whose nginx runs with the compose file's default limits."""
    (nginx,) = stack.containers("nginx")
    environment = dict(entry.split("=", 1) for entry in nginx.attrs["Config"]["Env"])
    for setting in ("CONNECTIONS_PER_CLIENT", "RATE_LIMIT_PER_SECOND", "RATE_LIMIT_BURST"):
        if environment.get(setting) != compose_default(setting):
            pytest.skip(f"the stack runs {setting}={environment.get(setting)}, not the default")
    return stack


def test_a_load_test_from_one_machine_gets_no_refusals(as_shipped):
    """The issue's measurement: `wrk -t2 -c50 -d30s` from the host, every answer a 2xx."""
    result = wrk(f"{as_shipped.url}/info", 50, 30)
    print(f"\nwrk -t2 -c50 -d30s {as_shipped.url}/info:\n{result['text']}")
    assert result["requests"] > 0
    assert result["non2xx"] == 0, result["text"]
    assert result["socket_errors"] == 0, result["text"]


def second_client(stack, seconds):
    """One request at a time, a new connection each, from a container with its own address.

    Returns [(status, seconds)]; status 0 is a transport error or a 10 s timeout.
    """
    (nginx,) = stack.containers("nginx")
    network, settings = next(iter(nginx.attrs["NetworkSettings"]["Networks"].items()))
    target = "http://gateway:8080/info"
    options = ["--resolve", f"gateway:8080:{settings['IPAddress']}"]
    if stack.url.startswith("https"):
        target = "https://localhost:8443/info"
        options = ["--resolve", f"localhost:8443:{settings['IPAddress']}", "--cacert", "/ca.crt"]
    script = (
        'end=$(( $(date +%s) + $0 )); while [ "$(date +%s)" -lt "$end" ]; do '
        'curl -s -o /dev/null --max-time 10 -w "%{http_code} %{time_total}\\n" "$@" || true; done'
    )
    volumes = {}
    if stack.ca:
        volumes[str(Path(stack.ca))] = {"bind": "/ca.crt", "mode": "ro"}
    output = stack.docker.containers.run(
        nginx.image,
        ["-c", script, str(seconds), *options, target],
        entrypoint=["sh"],
        network=network,
        volumes=volumes,
        remove=True,
    ).decode()
    return [
        (int(status), float(took))
        for status, took in (line.split() for line in output.splitlines())
    ]


def describe(samples):
    took = sorted(seconds for _, seconds in samples)
    failed = sum(1 for status, _ in samples if status != 200)
    return (
        f"{len(samples)} requests, {failed} failed, median {took[len(took) // 2] * 1000:.0f} ms, "
        f"p99 {took[int(len(took) * 0.99)] * 1000:.0f} ms, max {took[-1] * 1000:.0f} ms"
    )


def test_a_flood_from_one_client_does_not_starve_another(as_shipped):
    """wrk with 1,000 connections from the host; meanwhile a second client keeps asking."""
    alone = second_client(as_shipped, 5)
    flood = {}
    flooding = threading.Thread(
        target=lambda: flood.update(wrk(f"{as_shipped.url}/info", FLOOD_CONNECTIONS, 25))
    )
    flooding.start()
    time.sleep(3)
    during = second_client(as_shipped, 19)
    flooding.join()
    print(f"\nsecond client alone:        {describe(alone)}")
    print(f"second client during flood: {describe(during)}")
    print(
        f"flood, {FLOOD_CONNECTIONS} connections for 25 s: {flood['requests']} requests, "
        f"{flood['non2xx']} refused (429), {flood['socket_errors']} socket errors"
    )
    assert len(during) >= 10, "the second client hardly got to send"
    assert [status for status, _ in during if status != 200] == []
    # The flood had far more requests in progress than CONNECTIONS_PER_CLIENT allows: the
    # limit, not luck, kept the second client's share.
    assert flood["non2xx"] > 0, flood["text"]
