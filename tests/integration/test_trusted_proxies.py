"""Trusted upstream proxies (TRUSTED_PROXIES), and the optional redirect to HTTPS and HSTS.

A small stack of its own trusts exactly one address: the one the host's requests arrive
from (Docker's proxy for published ports), which plays the load balancer in front. A
container on the stack's network plays a client that is not a trusted proxy. The stack
also has TLS_REDIRECT_HTTP=true, HSTS_MAX_AGE=600 and a low rate limit, so the tests can
see whose address the limit counts.
"""

import json
import re
import time
import uuid

import pytest
import requests
from conftest import extra_stack

RATE = {"RATE_LIMIT_PER_SECOND": "2", "RATE_LIMIT_BURST": "3"}


@pytest.fixture(scope="module")
def proxied(stack):
    """The stack, with the address the host's requests come from as its one trusted proxy."""
    settings = {"TLS_REDIRECT_HTTP": "true", "HSTS_MAX_AGE": "600", **RATE}
    with extra_stack(stack, "proxied", APP_REPLICAS="1", **settings) as edge:
        # Before any proxy is trusted, /info's client is the address nginx sees.
        host_address = requests.get(f"{edge.tls_url}/info", verify=str(edge.ca), timeout=10)
        edge.host_address = host_address.json()["client"]
        edge.env["TRUSTED_PROXIES"] = edge.host_address
        edge.compose("up", "-d", "--no-deps", "nginx")
        edge.wait_until_healthy()
        edge.plain_url = f"http://127.0.0.1:{edge.env['GATEWAY_PORT']}"
        yield edge


def another_address():
    """A documentation address (RFC 5737) of its own for each use: a fresh rate bucket."""
    number = uuid.uuid4().int
    return f"198.51.{number % 256}.{(number >> 8) % 254 + 1}"


def logged(stack, request_id, timeout=10):
    """nginx's access-log entry for one request (lines are written at most 0.2 s late)."""
    (nginx,) = stack.containers("nginx")
    deadline = time.monotonic() + timeout
    while True:
        for line in nginx.logs(tail=500).decode().splitlines():
            if f'"request_id":"{request_id}"' in line:
                return json.loads(line)
        assert time.monotonic() < deadline, f"no access-log line for {request_id}"
        time.sleep(0.3)


def from_a_container(stack, *requests_headers, scheme="https"):
    """curl from a container on the stack's network (not a trusted proxy): [(status, body)].

    HTTPS by default (this stack redirects plain HTTP), trusting the stack's CA; the
    certificate names localhost, so curl is told where localhost is.
    """
    (nginx,) = stack.containers("nginx")
    network, settings = next(iter(nginx.attrs["NetworkSettings"]["Networks"].items()))
    port = {"https": 8443, "http": 8080}[scheme]
    # One curl process, one request per --next, each with its own headers: fast enough
    # that a burst of them meets the rate limit.
    arguments = []
    for headers in requests_headers:
        arguments += ["--next"] if arguments else []
        arguments += ["-s", "--cacert", "/ca.crt", "-w", r"\nSTATUS=%{http_code}\n"]
        arguments += ["--resolve", f"localhost:{port}:{settings['IPAddress']}"]
        for header in headers:
            arguments += ["-H", header]
        arguments.append(f"{scheme}://localhost:{port}/info")
    output = stack.docker.containers.run(
        nginx.image,
        arguments,
        entrypoint=["curl"],
        network=network,
        volumes={str(stack.ca): {"bind": "/ca.crt", "mode": "ro"}},
        remove=True,
    ).decode()
    parts = re.split(r"\nSTATUS=(\d+)\n", output)
    return [(int(status), body) for body, status in zip(parts[::2], parts[1::2], strict=False)]


def test_the_forwarded_address_from_a_trusted_proxy_is_the_client(proxied):
    client = another_address()
    response = requests.get(
        f"{proxied.tls_url}/info",
        headers={"X-Forwarded-For": client},
        verify=str(proxied.ca),
        timeout=10,
    )
    assert response.json()["client"] == client
    entry = logged(proxied, response.headers["X-Request-ID"])
    assert (entry["client"], entry["peer"]) == (client, proxied.host_address)
    # What a client wrote before the proxy's own entry is a claim, not an address.
    spoofed, real = another_address(), another_address()
    chain = requests.get(
        f"{proxied.tls_url}/info",
        headers={"X-Forwarded-For": f"{spoofed}, {real}"},
        verify=str(proxied.ca),
        timeout=10,
    )
    assert chain.json()["client"] == real


def test_limits_count_each_forwarded_address_apart(proxied):
    flooding, other = another_address(), another_address()
    with requests.Session() as http:
        flood = [
            http.get(
                f"{proxied.tls_url}/info",
                headers={"X-Forwarded-For": flooding},
                verify=str(proxied.ca),
                timeout=10,
            )
            for _ in range(12)
        ]
        # The same proxy, another client behind it: a bucket of its own, so served.
        served = http.get(
            f"{proxied.tls_url}/info",
            headers={"X-Forwarded-For": other},
            verify=str(proxied.ca),
            timeout=10,
        )
    statuses = [response.status_code for response in flood]
    print(f"12 requests at once from {flooding} through the trusted proxy: {statuses}")
    assert 429 in statuses
    refused = next(response for response in flood if response.status_code == 429)
    assert refused.json()["client"] == flooding
    assert refused.json()["limit"] == "RATE_LIMIT_PER_SECOND"
    entry = logged(proxied, refused.headers["X-Request-ID"])
    assert (entry["client"], entry["limit"]) == (flooding, "RATE_LIMIT_PER_SECOND")
    assert served.status_code == 200 and served.json()["client"] == other


def test_forwarded_headers_from_an_untrusted_address_are_ignored(proxied):
    forged = [(f"X-Forwarded-For: {another_address()}",) for _ in range(12)]
    answers = from_a_container(proxied, *forged)
    statuses = [status for status, _ in answers]
    print(f"12 requests, each claiming another X-Forwarded-For, from a container: {statuses}")
    bodies = [json.loads(body) for _, body in answers]
    assert len(bodies) == 12
    (container_address,) = {body["client"] for body in bodies}
    assert container_address != proxied.host_address
    # Every claimed address was ignored: all were counted as one client, so the rate
    # limit (2 r/s, burst 3) refused some.
    assert 429 in statuses and 200 in statuses


def test_the_scheme_a_trusted_proxy_forwards_is_believed(proxied):
    # A TLS-terminating balancer speaks plain HTTP to us and says X-Forwarded-Proto: https.
    behind_tls = requests.get(
        f"{proxied.plain_url}/info",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": another_address()},
        allow_redirects=False,
        timeout=10,
    )
    assert behind_tls.status_code == 200, "redirected although the client used HTTPS"
    assert behind_tls.json()["url"].startswith("https://")
    assert behind_tls.headers["Strict-Transport-Security"] == "max-age=600"
    # The same claim from an untrusted address changes nothing: plain HTTP is redirected.
    ((status, _),) = from_a_container(proxied, ("X-Forwarded-Proto: https",), scheme="http")
    assert status == 308


def test_plain_http_is_redirected_to_https_when_asked(proxied):
    headers = {"X-Forwarded-For": another_address()}
    for method in ("GET", "POST"):
        response = requests.request(
            method,
            f"{proxied.plain_url}/info?x=1",
            headers=headers,
            allow_redirects=False,
            timeout=10,
        )
        # 308 keeps the method and body, unlike 301.
        assert response.status_code == 308, method
        expected = f"https://127.0.0.1:{proxied.env['GATEWAY_TLS_PORT']}/info?x=1"
        assert response.headers["Location"] == expected
        assert "Strict-Transport-Security" not in response.headers
    # The container's health check asks over plain HTTP and must not be redirected.
    health = requests.get(f"{proxied.plain_url}/nginx-healthz", allow_redirects=False, timeout=10)
    assert health.status_code == 200
    secure = requests.get(
        f"{proxied.tls_url}/info", headers=headers, verify=str(proxied.ca), timeout=10
    )
    assert secure.headers["Strict-Transport-Security"] == "max-age=600"
