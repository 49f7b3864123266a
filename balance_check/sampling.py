"""Send requests from concurrent clients and note which replica answered each one."""

import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import httpx
import requests

# What a failed request raises, over HTTP/1.1 (requests) or HTTP/2 (httpx).
REQUEST_ERRORS = (requests.RequestException, httpx.HTTPError)


class TargetError(Exception):
    """The target cannot be checked at all: a bad URL, nothing listening, no replica name."""


class AnswerError(Exception):
    """An answer that does not name its replica; the message is the kind of error."""


@dataclass(frozen=True)
class Identity:
    """Where an answer names its replica: JSON fields of the body, or a response header.

    An error answer is named the same way, or else by `error_header`: a replica's error
    page rarely carries the JSON fields of its normal answers, but this project's replicas
    name themselves in X-Served-By on every answer. A balancer's own errors (nginx's 502)
    name no replica and stay unattributed.
    """

    fields: tuple[str, ...] = ("hostname",)
    header: str | None = None
    error_header: str | None = "X-Served-By"

    def describe(self):
        if self.header:
            return f"header {self.header}"
        return "JSON field " + " + ".join(self.fields)

    def replica_of(self, response):
        """Return the replica's name from one answer, or raise AnswerError."""
        if self.header:
            if self.header not in response.headers:
                raise AnswerError(f"no header {self.header}")
            return response.headers[self.header]
        try:
            body = response.json()
        except ValueError:
            raise AnswerError("not JSON") from None
        if not isinstance(body, dict):
            raise AnswerError("not a JSON object")
        missing = [field for field in self.fields if field not in body]
        if missing:
            raise AnswerError(f"no field {missing[0]!r}")
        return " ".join(str(body[field]) for field in self.fields)

    def replica_of_error(self, response):
        """Return the replica that gave an error answer, or None when it names none."""
        try:
            return self.replica_of(response)
        except AnswerError:
            pass
        if self.header is None and self.error_header:
            return response.headers.get(self.error_header)
        return None


# Frozen, so one shared default is safe.
BY_HOSTNAME = Identity()
# Clients sending at once, unless told otherwise.
CONCURRENCY = 10


@dataclass(frozen=True)
class Sample:
    """One request: the replica that answered (None if none is named), its latency, its error.

    `client` is the number of the client that sent it (1..K), `at` when it was sent (seconds
    into the run), `connection` the local address:port it went over (HTTP/2 only), `session`
    the client's session key after it (the --session-cookie's value, or the header it sends).
    """

    replica: str | None
    seconds: float
    error: str | None = None
    client: int = 1
    at: float = 0.0
    connection: str | None = None
    session: str | None = None


def causes(error):
    """Yield an exception and everything it wraps (requests and urllib3 nest them deeply)."""
    seen = 0
    while error is not None and seen < 20:
        yield error
        seen += 1
        wrapped = getattr(error, "reason", None) or error.__cause__ or error.__context__
        if wrapped is None and error.args and isinstance(error.args[0], BaseException):
            wrapped = error.args[0]
        error = wrapped if isinstance(wrapped, BaseException) else None


def unverified_certificate(error):
    """The reason a server's certificate was not trusted, or None if that was not the error."""
    for cause in causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or str(cause)
    return None


def error_kind(error):
    """Name a failed request's error in a few words: the same words for the same cause."""
    if isinstance(error, requests.Timeout | httpx.TimeoutException):
        return "timeout"
    if unverified_certificate(error):
        return "certificate not trusted"
    chain = list(causes(error))
    if any(isinstance(cause, ConnectionRefusedError) for cause in chain):
        return "connection refused"
    if any(isinstance(cause, socket.gaierror) for cause in chain):
        return "host name not found"
    if isinstance(error, requests.ConnectionError | httpx.TransportError):
        return "connection error"
    return type(error).__name__


class Client:
    """One client: its own connection pool and cookie jar, over HTTP/1.1 or HTTP/2.

    HTTP/1.1 goes through requests, HTTP/2 through httpx (h2): a single connection that
    carries every request as a stream. `headers` are sent with every request.
    """

    def __init__(self, url, *, verify=True, http2=False, new_connections=False, headers=None):
        self.verify = verify
        self.http2 = http2
        if http2:
            self.http = httpx.Client(
                http2=True,
                # https agrees on h2 by ALPN (the probe reports a server that did not);
                # http:// has no ALPN: speak h2 from the first byte (h2c, prior knowledge).
                http1=urlsplit(url).scheme == "https",
                verify=ssl_context(verify),
                headers=headers,
                limits=httpx.Limits(max_connections=1),
            )
        else:
            self.http = requests.Session()
            self.http.headers.update(headers or {})
            if new_connections:
                self.http.headers["Connection"] = "close"

    def get(self, url, timeout):
        if self.http2:
            return self.http.get(url, timeout=timeout)
        # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE or
        # CURL_CA_BUNDLE in the environment (psf/requests#3829).
        return self.http.get(url, timeout=timeout, verify=self.verify)

    def cookie(self, name):
        return self.http.cookies.get(name)

    def close(self):
        self.http.close()


def ssl_context(verify):
    """requests' `verify` (True, a CA file, False) as httpx takes it."""
    if verify is False:
        return False
    return ssl.create_default_context(cafile=None if verify is True else verify)


def connection_of(response):
    """The local address:port an HTTP/2 answer came over, or None for HTTP/1.1."""
    stream = getattr(response, "extensions", {}).get("network_stream")
    if stream is None:
        return None
    host, port = stream.get_extra_info("client_addr")[:2]
    return f"{host}:{port}"


def sample_once(http, url, identity, timeout):
    """Send one GET from the Client `http` and return what happened as a Sample."""
    started = time.perf_counter()
    try:
        response = http.get(url, timeout)
    except REQUEST_ERRORS as error:
        return Sample(None, time.perf_counter() - started, error_kind(error))
    seconds = time.perf_counter() - started
    connection = connection_of(response)
    if response.status_code >= 400:
        replica = identity.replica_of_error(response)
        return Sample(replica, seconds, f"HTTP {response.status_code}", connection=connection)
    try:
        return Sample(identity.replica_of(response), seconds, connection=connection)
    except AnswerError as error:
        return Sample(None, seconds, str(error), connection=connection)


def check_url(url):
    """Raise TargetError unless the URL is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError as error:
        raise TargetError(f"{url!r} has a bad port: {error}") from None


def probe(url, identity, timeout, verify=True, http2=False):
    """Send one request first, so a target that cannot work fails with one clear reason."""
    check_url(url)
    client = Client(url, verify=verify, http2=http2)
    try:
        response = client.get(url, timeout)
    except (requests.exceptions.InvalidURL, httpx.InvalidURL) as error:
        raise TargetError(f"{url!r} is not a valid URL: {error}") from None
    except REQUEST_ERRORS as error:
        if reason := unverified_certificate(error):
            raise TargetError(
                f"cannot verify the certificate of {url}: {reason}; pass --cacert FILE "
                "(the CA that signed it), or --insecure to skip the check"
            ) from None
        if http2 and isinstance(error, httpx.RemoteProtocolError):
            raise TargetError(
                f"{url} does not speak HTTP/2 ({error}); over http:// h2 is sent without "
                "asking (prior knowledge): try the https:// URL, where it is agreed by ALPN"
            ) from None
        raise TargetError(f"cannot reach {url}: {error_kind(error)}") from None
    finally:
        client.close()
    if http2 and response.http_version != "HTTP/2":
        raise TargetError(f"{url} answered over {response.http_version}, not HTTP/2")
    if response.status_code >= 500:
        # A balancer's failure is what the run measures: it is counted, not fatal.
        return
    if response.status_code >= 400:
        raise TargetError(f"{url} answered HTTP {response.status_code}, not a replica's answer")
    try:
        identity.replica_of(response)
    except AnswerError as error:
        raise TargetError(explain_unnamed(url, response, identity, str(error))) from None


def explain_unnamed(url, response, identity, kind):
    """Say why an answer names no replica, and which option would help."""
    if identity.header:
        headers = ", ".join(sorted(response.headers)) or "none"
        return f"{url} answered without the header {identity.header} (it sent: {headers})"
    if kind in ("not JSON", "not a JSON object"):
        content_type = response.headers.get("Content-Type", "no Content-Type")
        return (
            f"{url} did not answer a JSON object ({content_type}); "
            "name the header that carries the replica with --header"
        )
    body = response.json()
    missing = next(field for field in identity.fields if field not in body)
    fields = ", ".join(body) or "none"
    return f"{url} answered JSON without the field {missing!r} (it has: {fields}); use --field"


class Budget:
    """Hands out one request at a time until the count or the time runs out, or a stop."""

    def __init__(self, requests_total=None, duration=None):
        self.left = requests_total
        self.deadline = time.monotonic() + duration if duration else None
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def take(self):
        if self.stopped.is_set():
            return False
        if self.deadline is not None:
            return time.monotonic() < self.deadline
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


@dataclass(frozen=True)
class SessionKey:
    """What makes a client a session: a cookie the balancer sets, or a header it is sent.

    `header_value` may hold `{client}`, the client's number: `X-Forwarded-For:10.0.{client}.1`.
    """

    cookie: str | None = None
    header: str | None = None
    header_value: str = "client-{client}"

    def headers_for(self, client):
        return {self.header: self.header_value.format(client=client)} if self.header else {}

    def value_of(self, client, http):
        if self.cookie:
            return http.cookie(self.cookie)
        return self.headers_for(client).get(self.header)


def send_requests(
    url,
    *,
    requests_total=None,
    duration=None,
    concurrency=CONCURRENCY,
    timeout=5.0,
    identity=BY_HOSTNAME,
    new_connections=False,
    on_sample=None,
    verify=True,
    http2=False,
    session_key=None,
    split_evenly=False,
):
    """Send GETs from `concurrency` clients, `requests_total` in all or for `duration` s.

    Each client has its own connection pool and cookie jar (over HTTP/2: one connection),
    and sends the headers of `session_key` (a SessionKey) if given. `split_evenly`: each
    client sends its own share of `requests_total` (else the quicker clients send more).
    `verify` is requests' own: True (the system's CAs), a CA file's path, or False.
    """
    if (requests_total is None) == (duration is None):
        raise ValueError("give either requests_total or duration")
    if split_evenly and requests_total is not None:
        # Client n sends every concurrency-th request of the total.
        budgets = [Budget(len(range(n, requests_total, concurrency))) for n in range(concurrency)]
    else:
        budgets = [Budget(requests_total, duration)] * concurrency
    samples = []
    lock = threading.Lock()
    began = time.perf_counter()

    def client(number):
        budget = budgets[number - 1]
        headers = session_key.headers_for(number) if session_key else {}
        # One client per thread: neither a requests.Session nor a cookie jar is shared.
        http = Client(
            url, verify=verify, http2=http2, new_connections=new_connections, headers=headers
        )
        try:
            while budget.take():
                at = time.perf_counter() - began
                sample = sample_once(http, url, identity, timeout)
                session = session_key.value_of(number, http) if session_key else None
                sample = replace(sample, client=number, at=at, session=session)
                with lock:
                    samples.append(sample)
                if on_sample:
                    on_sample(sample)
        finally:
            http.close()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        clients = [pool.submit(client, number) for number in range(1, concurrency + 1)]
        try:
            for running in clients:
                running.result()
        except BaseException:
            # Ctrl-C: let the clients finish the request in hand, then stop.
            for each in budgets:
                each.stopped.set()
            raise
    return sorted(samples, key=lambda sample: sample.at)
