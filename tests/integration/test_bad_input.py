"""Bad input gets a clear 4xx (or a closed connection) at the nginx front and breaks nothing.

Raw sockets send what a client library would refuse to. Nothing here may get a 5xx, restart
a replica, or keep the stack from serving normal traffic right after.
"""

import contextlib
import json
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from conftest import extra_stack

HOST = b"Host: gateway\r\nConnection: close\r\n"
BAD_REQUESTS = {
    "malformed request line": (b"GARBAGE\r\n\r\n", {400}),
    "request line with no method": (b" /info HTTP/1.1\r\n" + HOST + b"\r\n", {400}),
    "lower-case method": (b"get /info HTTP/1.1\r\n" + HOST + b"\r\n", {400}),
    # nginx passes any well-formed method on; the app answers 405 with Allow.
    "unknown method": (b"BREW /info HTTP/1.1\r\n" + HOST + b"\r\n", {405}),
    "method the endpoint lacks": (b"DELETE /info HTTP/1.1\r\n" + HOST + b"\r\n", {405}),
    "HTTP/1.1 with no Host": (b"GET /info HTTP/1.1\r\nConnection: close\r\n\r\n", {400}),
    # large_client_header_buffers 4 8k: nginx says 400 "Request Header Or Cookie Too Large".
    "one header over 8 KiB": (
        b"GET /info HTTP/1.1\r\n" + HOST + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
        {400, 431},
    ),
    "headers over 32 KiB in all": (
        b"GET /info HTTP/1.1\r\n"
        + HOST
        + b"".join(b"X-H%d: %s\r\n" % (n, b"a" * 7000) for n in range(6))
        + b"\r\n",
        {400, 431},
    ),
    "URL over 8 KiB": (b"GET /info?q=" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST + b"\r\n", {414}),
    "body over client_max_body_size (1m)": (
        b"POST /info HTTP/1.1\r\n" + HOST + b"Content-Length: 2000000\r\n\r\n",
        {413},
    ),
    "path traversal": (b"GET /../../etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n", {400, 404}),
    "encoded path traversal": (
        b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n" + HOST + b"\r\n",
        {400, 404},
    ),
    "invalid percent-encoding": (b"GET /info%zz HTTP/1.1\r\n" + HOST + b"\r\n", {400}),
    "encoded NUL byte": (b"GET /info%00 HTTP/1.1\r\n" + HOST + b"\r\n", {400}),
    "Content-Length and chunked at once (smuggling)": (
        b"POST /info HTTP/1.1\r\n"
        + HOST
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "Content-Length not a number": (
        b"POST /info HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n\r\n",
        {400},
    ),
    "invalid chunk size": (
        b"POST /info HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        {400},
    ),
}


def address(stack):
    url = urlsplit(stack.url)
    return url.hostname, url.port


@contextlib.contextmanager
def raw_connection(stack, timeout=15):
    """A socket to nginx's front: TLS (trusting the stack's CA) when the stack's URL is https."""
    host, port = address(stack)
    with socket.create_connection((host, port), timeout=timeout) as connection:
        if urlsplit(stack.url).scheme != "https":
            yield connection
            return
        context = ssl.create_default_context(cafile=stack.ca)
        with context.wrap_socket(connection, server_hostname=host) as secured:
            yield secured


def send_raw(stack, data, timeout=15):
    """Send bytes as they are; return the status code, or None if nginx just closed."""
    with raw_connection(stack, timeout) as connection:
        connection.sendall(data)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass  # nginx closed with our unread bytes in its buffer: the answer came first
    if not answer:
        return None
    status_line = answer.split(b"\r\n", 1)[0].split()
    return int(status_line[1])


@pytest.fixture(scope="module")
def replicas_before(stack):
    """Each app replica's id and restart count before any bad input."""
    return {c.id: c.attrs["RestartCount"] for c in stack.containers("app")}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_request_gets_a_clear_4xx(stack, replicas_before, name):
    data, expected = BAD_REQUESTS[name]
    status = send_raw(stack, data)
    assert status in expected, f"{name}: got {status}, expected one of {sorted(expected)}"


def test_slow_client_trickling_headers_is_cut_off(stack, replicas_before):
    """A slowloris client is closed by client_header_timeout (10 s), not served forever."""
    header = b"GET /info HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    with raw_connection(stack, timeout=30) as connection:
        closed = False
        for byte in header:
            try:
                connection.sendall(bytes([byte]))
            except OSError:  # reset by nginx while we were still sending
                closed = True
                break
            connection.settimeout(0.5)
            try:
                closed = connection.recv(65536) == b""
            except TimeoutError:
                continue
            finally:
                connection.settimeout(30)
            break
    waited = time.monotonic() - started
    assert closed, "nginx answered or kept the trickling connection open"
    # The header never completed, so no answer: nginx closes at client_header_timeout.
    assert 9 < waited < len(header) * 0.5, f"closed after {waited:.1f}s"


@pytest.fixture(scope="module")
def limited_stack(stack):
    """A second, small stack of the same image whose per-client limits are low."""
    settings = {"RATE_LIMIT_PER_SECOND": "5", "RATE_LIMIT_BURST": "10"}
    with extra_stack(
        stack, "limits", APP_REPLICAS="1", CONNECTIONS_PER_CLIENT="2", **settings
    ) as limited:
        yield limited


def wait_until_served(stack, timeout=30):
    """Wait until the limits let one request through again."""
    deadline = time.monotonic() + timeout
    while requests.get(f"{stack.url}/info", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "never served again"
        time.sleep(0.5)


def test_more_requests_in_progress_than_allowed_get_429(limited_stack):
    wait_until_served(limited_stack)
    # A full rate bucket (burst 10 at 5 r/s refills in 2 s): only limit_conn can say 429.
    time.sleep(2.5)
    # Two requests whose body never comes are in progress (CONNECTIONS_PER_CLIENT=2)...
    with contextlib.ExitStack() as stalled:
        for _ in range(2):
            connection = stalled.enter_context(raw_connection(limited_stack))
            connection.sendall(
                b"POST /info HTTP/1.1\r\nHost: gateway\r\nContent-Length: 10\r\n\r\n"
            )
        time.sleep(1)
        # ...so a third one from the same address is turned away, and told why.
        refused = requests.get(f"{limited_stack.url}/info", timeout=10)
        assert refused.status_code == 429
    assert_explains_itself(limited_stack, refused, "CONNECTIONS_PER_CLIENT")
    wait_until_served(limited_stack)


def assert_explains_itself(stack, refused, setting):
    """A 429 names the limit and its value in the body, and in nginx's access-log line."""
    body = refused.json()
    assert body["limit"] == setting, body
    assert setting in body["message"] and stack.env[setting] in body["message"], body
    assert refused.headers["Retry-After"] == "1"
    request_id = refused.headers["X-Request-ID"]
    (nginx,) = stack.containers("nginx")
    deadline = time.monotonic() + 10
    # Access lines are written in batches, at most 200 ms late.
    while True:
        lines = nginx.logs(tail=500).decode().splitlines()
        logged = [json.loads(line) for line in lines if f'"request_id":"{request_id}"' in line]
        if logged or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [(entry["status"], entry["limit"]) for entry in logged] == [(429, setting)]


def test_request_flood_from_one_client_gets_429(limited_stack):
    wait_until_served(limited_stack)
    started = time.monotonic()
    with requests.Session() as http:
        statuses = [http.get(f"{limited_stack.url}/info", timeout=10) for _ in range(40)]
    elapsed = time.monotonic() - started
    codes = [response.status_code for response in statuses]
    assert set(codes) <= {200, 429}, codes
    # 5 r/s with a burst of 10: at most the burst plus what the rate refilled, plus one.
    assert 1 <= codes.count(200) <= 10 + 5 * elapsed + 1, (codes, elapsed)
    rejected = [response for response in statuses if response.status_code == 429]
    assert rejected, "a flood of 40 requests was never limited"
    assert all("X-Served-By" not in response.headers for response in rejected), (
        "a 429 came from a replica: nginx should have stopped the flood"
    )
    assert_explains_itself(limited_stack, rejected[0], "RATE_LIMIT_PER_SECOND")
    wait_until_served(limited_stack)


def test_replicas_survived_and_the_stack_serves(stack, replicas_before):
    """After all of the above: the same replicas, none restarted, all of them answering."""
    after = {c.id: c.attrs["RestartCount"] for c in stack.containers("app")}
    assert after == replicas_before, "a replica was restarted or replaced"
    answered, failures = set(), []

    def get():
        response = requests.get(f"{stack.url}/info", headers={"Connection": "close"}, timeout=10)
        if response.status_code == 200:
            answered.add(response.json()["hostname"])
        else:
            failures.append(response.status_code)

    threads = [threading.Thread(target=get) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert answered == {c.attrs["Config"]["Hostname"] for c in stack.containers("app")}
