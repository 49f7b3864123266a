"""HTTPS and HTTP/2 on the TLS port (GATEWAY_TLS_PORT), verified against the stack's local CA.

The session's stack has a certificate folder of its own, filled by scripts/tls-certs.sh as
`make up` fills certs/. Every client here trusts that CA and nothing else. The rotation
test replaces the certificate files under steady HTTPS traffic and reloads nginx.
"""

import hashlib
import socket
import ssl
import subprocess
import time
import warnings
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from balancers import balance_check
from conftest import ROOT

from balance_check.traffic import SteadyTraffic


@pytest.fixture(scope="module")
def tls(stack):
    """The session's stack, when its TLS URL and CA are known."""
    if not stack.tls_url or not stack.ca:
        pytest.skip("the stack's TLS URL and CA are unknown: set GATEWAY_TLS_URL and GATEWAY_CA")
    return stack


def only_the_local_ca(stack):
    """A verifying client's context that trusts the stack's CA and no other."""
    return ssl.create_default_context(cafile=stack.ca)


def running_hostnames(stack):
    return {container.attrs["Config"]["Hostname"] for container in stack.containers("app")}


def address(url):
    parts = urlsplit(url)
    return parts.hostname, parts.port


def pinned(stack, version, ciphers="ALL:@SECLEVEL=0"):
    """A context that offers exactly one TLS version (and, for 1.2, the given ciphers).

    SECLEVEL=0 lets this client offer what its OpenSSL would refuse by default, so that
    a refusal is the server's.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(stack.ca)
    context.set_ciphers(ciphers)
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0 and 1.1 for its own use; here they are the probe.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    return context


def handshake(stack, context, session=None):
    """Connect, send one request, read the answer: (TLS version, cipher, session, resumed)."""
    host, port = address(stack.tls_url)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host, session=session) as connection,
    ):
        connection.sendall(
            b"GET /nginx-healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        return (
            connection.version(),
            connection.cipher()[0],
            connection.session,
            connection.session_reused,
        )


def served_certificate(stack):
    """The SHA-256 of the certificate nginx presents to a new connection now."""
    host, port = address(stack.tls_url)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        only_the_local_ca(stack).wrap_socket(raw, server_hostname=host) as connection,
    ):
        return hashlib.sha256(connection.getpeercert(binary_form=True)).hexdigest()


def certificate_on_disk(stack):
    pem = (stack.ca.parent / stack.env.get("TLS_CERT_FILE", "server.crt")).read_text()
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def test_info_over_tls_trusting_only_the_local_ca(tls):
    with httpx.Client(verify=only_the_local_ca(tls)) as client:
        response = client.get(f"{tls.tls_url}/info", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["hostname"] in running_hostnames(tls)
    assert body["hostname"] == response.headers["X-Served-By"]
    # The app knows it was HTTPS, and on which port: the URLs it builds say so.
    assert body["url"] == f"{tls.tls_url}/info"


def test_the_certificate_names_localhost_the_loopback_and_this_machine(tls):
    _, port = address(tls.tls_url)
    for name in ("localhost", socket.gethostname()):
        context = only_the_local_ca(tls)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=name) as connection,
        ):
            assert connection.version() in ("TLSv1.2", "TLSv1.3"), name


def test_alpn_negotiates_h2_and_replicas_answer_over_http2(tls):
    context = only_the_local_ca(tls)
    context.set_alpn_protocols(["h2", "http/1.1"])
    host, port = address(tls.tls_url)
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as connection,
    ):
        assert connection.selected_alpn_protocol() == "h2"
    # One HTTP/2 connection, its requests spread over the replicas by nginx.
    with httpx.Client(http2=True, verify=only_the_local_ca(tls)) as client:
        responses = [client.get(f"{tls.tls_url}/info", timeout=10) for _ in range(20)]
    assert {response.http_version for response in responses} == {"HTTP/2"}
    served = {response.json()["hostname"] for response in responses}
    print(f"20 HTTP/2 requests on one connection, answered by {len(served)} replicas")
    assert served <= running_hostnames(tls)
    assert len(served) > 1, "every request on the HTTP/2 connection went to one replica"


def test_the_page_works_over_https_and_http2(tls):
    with httpx.Client(http2=True, verify=only_the_local_ca(tls)) as client:
        page = client.get(f"{tls.tls_url}/", timeout=10)
        # The page polls /info with a relative URL: the same origin, so HTTPS too.
        info = client.get(f"{tls.tls_url}/info", timeout=10)
    assert page.http_version == "HTTP/2"
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert 'fetch("/info"' in page.text
    assert info.status_code == 200


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["TLS 1.0", "TLS 1.1"]
)
def test_tls_1_0_and_1_1_are_refused(tls, version):
    with pytest.raises(ssl.SSLError) as refused:
        handshake(tls, pinned(tls, version))
    # The server's alert, not a client that could not even offer the version.
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLS 1.2", "TLS 1.3"]
)
def test_tls_1_2_and_1_3_are_accepted_and_sessions_resumed(tls, version):
    context = pinned(tls, version)
    negotiated, _, session, resumed = handshake(tls, context)
    assert (
        negotiated
        == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    )
    assert not resumed
    # A second connection resumes the first one's session (nginx's shared session cache).
    assert handshake(tls, context, session=session)[3] is True


# TLS 1.2 suites outside Mozilla's "intermediate" list: CBC modes, no forward secrecy.
OUTSIDE_THE_GUIDELINE = ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "AES128-GCM-SHA256"]
IN_THE_GUIDELINE = ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"]


@pytest.mark.parametrize("cipher", OUTSIDE_THE_GUIDELINE + IN_THE_GUIDELINE)
def test_tls_1_2_offers_only_the_guideline_ciphers(tls, cipher):
    context = pinned(tls, ssl.TLSVersion.TLSv1_2, ciphers=cipher)
    if cipher in IN_THE_GUIDELINE:
        assert handshake(tls, context)[1] == cipher
    else:
        with pytest.raises(ssl.SSLError) as refused:
            handshake(tls, context)
        assert refused.value.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", refused.value


def test_plain_http_is_still_served_without_redirect_or_hsts_by_default(tls):
    plain = f"http://127.0.0.1:{tls.env['GATEWAY_PORT']}" if "GATEWAY_PORT" in tls.env else None
    if plain is None:
        pytest.skip("the stack's plain port is unknown")
    response = requests.get(f"{plain}/info", allow_redirects=False, timeout=10)
    assert response.status_code == 200
    assert response.json()["url"] == f"{plain}/info"
    secure = requests.get(f"{tls.tls_url}/info", verify=str(tls.ca), timeout=10)
    assert "Strict-Transport-Security" not in secure.headers
    assert "Strict-Transport-Security" not in response.headers


def test_balance_check_verifies_https_with_cacert_or_says_why_not(tls):
    url = f"{tls.tls_url}/info"
    unverified = balance_check(url, "-n", "20")
    assert unverified.returncode == 2, unverified.stdout
    (line,) = unverified.stderr.strip().splitlines()
    assert line.startswith(f"balance-check: cannot verify the certificate of {url}: "), line
    assert "--cacert FILE" in line and "--insecure" in line, line

    # Every request verified and answered (no balance expectation: that is the
    # distribution test's); exit status 0 means no request failed.
    verified = balance_check(url, "-n", "50", "--cacert", str(tls.ca), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    insecure = balance_check(url, "-n", "20", "--insecure")
    assert insecure.returncode == 0, insecure.stdout + insecure.stderr
    assert "Unverified HTTPS request" not in insecure.stderr


def test_a_replaced_certificate_is_served_after_reload_and_no_request_fails(tls):
    """Rotation: new files (mv, a new inode) in the mounted folder, `make reload`, under load."""
    if "TLS_CERT_DIR" not in tls.env:
        pytest.skip("the stack's certificate folder is not this session's to replace")
    before = served_certificate(tls)
    assert before == certificate_on_disk(tls)
    with SteadyTraffic(f"{tls.tls_url}/info", clients=4, verify=str(tls.ca)) as load:
        load.run_for(2)
        # A new key and certificate from the same CA, moved into place as a user would.
        subprocess.run(
            [ROOT / "scripts/tls-certs.sh", "--renew"], env=tls.env, check=True, timeout=120
        )
        replaced = certificate_on_disk(tls)
        assert replaced != before
        # What `make reload` runs.
        tls.compose("exec", "-T", "nginx", "/bin/sh", "/etc/nginx/gateway/start.sh", "reload")
        deadline = time.monotonic() + 30
        while served_certificate(tls) != replaced:
            assert time.monotonic() < deadline, "nginx never served the new certificate"
            time.sleep(0.2)
        switched = time.monotonic()
        load.run_for(2)
    print(load.summary("certificate replaced and nginx reloaded under HTTPS load"))
    after_switch = [outcome for outcome in load.outcomes if outcome.started > switched]
    assert after_switch, "no request was made with the new certificate"
    assert load.failures == []
