"""The page at / names every running replica, in a real headless Chromium."""

import html
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import ROOT, fault

from balance_check.sampling import send_requests

IN_CI = os.environ.get("CI", "").lower() == "true"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# FIELD-NOTES: the flags that let Debian's chromium run headless in a container or CI.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1100,860",
]


def open_page(stack, tmp_path, screenshot_name, virtual_ms=10000, path="/"):
    """The page (`path` of the stack's URL) in headless chromium: its DOM after `virtual_ms`,
    and a screenshot.

    Virtual time: the page's 200 ms polls run back to back (virtual_ms / 200 of them), and
    the clock stands still while a request is in flight, so a slow machine sees the same.
    """
    browser = chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / screenshot_name
    screenshot.unlink(missing_ok=True)
    finished = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--virtual-time-budget={virtual_ms}",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            f"{stack.url}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert screenshot.read_bytes().startswith(b"\x89PNG"), "no screenshot was written"
    return finished.stdout


def chromium():
    """Debian's chromium (`make browser` installs it); CI=true fails without it."""
    path = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    if path is None:
        if IN_CI:
            pytest.fail("CI=true but chromium is missing: `make browser` installs it")
        pytest.skip("chromium is missing: `make browser` installs it")
    return path


def running_hostnames(stack):
    return {container.attrs["Config"]["Hostname"] for container in stack.containers("app")}


def wait_until_every_replica_answers(stack, deadline_seconds=60):
    """Return the running replicas once each has answered through nginx.

    A replica restarted by an earlier test may sit out nginx's fail_timeout: wait for it.
    """
    deadline = time.monotonic() + deadline_seconds
    answered = set()
    hostnames = running_hostnames(stack)
    while time.monotonic() < deadline and not hostnames <= answered:
        samples = send_requests(f"{stack.url}/info", requests_total=2 * len(hostnames))
        answered |= {sample.replica for sample in samples if sample.replica}
        hostnames = running_hostnames(stack)
    assert hostnames, "Docker runs no app replica"
    assert hostnames <= answered, f"never answered through nginx: {hostnames - answered}"
    return hostnames


def test_page_is_served_as_html_by_nginx(stack, session):
    response = session.get(f"{stack.url}/")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "X-Served-By" not in response.headers, "the page must come from nginx, not a replica"
    assert "<title>flask-gateway: who answers?</title>" in response.text


def test_page_names_every_running_replica(stack, tmp_path):
    chromium()
    hostnames = wait_until_every_replica_answers(stack)
    dom = open_page(stack, tmp_path, "page.png")

    # Each replica's row in the share chart starts with its hostname.
    named = {html.unescape(name) for name in re.findall(r'<div class="name">([^<]+)<', dom)}
    assert named == hostnames, f"page names {sorted(named)}, Docker runs {sorted(hostnames)}"
    assert f"<b>{len(hostnames)} replicas</b> answering" in dom


def test_page_marks_the_replicas_in_trouble(stack, tmp_path):
    chromium()
    wait_until_every_replica_answers(stack)
    erring, slow, unavailable, *healthy = stack.containers("app")
    (unavailable_ip,) = [
        network["IPAddress"]
        for network in unavailable.attrs["NetworkSettings"]["Networks"].values()
    ]
    try:
        fault(stack, erring, "set", "error", "--for", "2m")
        fault(stack, slow, "set", "slow", "--ms", "300", "--for", "2m")
        fault(stack, unavailable, "set", "unavailable", "--for", "2m")
        # Fewer polls than the page's window of 50 answers: nginx tries the unavailable
        # replica once, then leaves it out for NGINX_FAIL_TIMEOUT, so that one moved request
        # must still be in the window when the page is read (at 50 it could drop out).
        dom = open_page(stack, tmp_path, "page-fault.png", virtual_ms=8000)
    finally:
        subprocess.run(
            [ROOT / "scripts/fault.sh", "all", "heal"], cwd=ROOT, env=stack.env, timeout=120
        )

    # One chunk per replica row: its class, its name, and its note when it is in trouble.
    notes = {}
    for row in dom.split('<div class="row replica')[1:]:
        name = html.unescape(re.match(r'[^"]*"><div class="name">([^<]+)<', row)[1])
        note = re.search(r'<div class="trouble-note">in trouble: ([^<]+)</div>', row)
        if row.startswith(" trouble"):
            notes[name] = html.unescape(note[1])
    troubled = set(notes)
    hostname = {c: c.attrs["Config"]["Hostname"] for c in stack.containers("app")}
    # The page opened after the fault: it never got an answer from the unavailable
    # replica, so it names that one by the address nginx tried.
    assert troubled == {hostname[erring], hostname[slow], unavailable_ip}, notes
    assert "errors (HTTP 500)" in notes[hostname[erring]]
    assert "slow: " in notes[hostname[slow]]
    assert "nginx moved" in notes[unavailable_ip]
    assert not troubled & {hostname[c] for c in healthy}
    assert re.search(r"answering<span class=\"bad\">, 3 in trouble</span>", dom)
