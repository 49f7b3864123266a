"""Send requests from concurrent clients and note which replica answered each one."""

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests


class TargetError(Exception):
    """The target cannot be checked at all: a bad URL, nothing listening, no replica name."""


class AnswerError(Exception):
    """An answer that does not name its replica; the message is the kind of error."""


@dataclass(frozen=True)
class Identity:
    """Where an answer names its replica: JSON fields of the body, or a response header."""

    fields: tuple[str, ...] = ("hostname",)
    header: str | None = None

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


# Frozen, so one shared default is safe.
BY_HOSTNAME = Identity()


@dataclass(frozen=True)
class Sample:
    """One request: the replica that answered (None if it failed), its latency, its error."""

    replica: str | None
    seconds: float
    error: str | None = None


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


def error_kind(error):
    """Name a failed request's error in a few words: the same words for the same cause."""
    if isinstance(error, requests.Timeout):
        return "timeout"
    chain = list(causes(error))
    if any(isinstance(cause, ConnectionRefusedError) for cause in chain):
        return "connection refused"
    if any(isinstance(cause, socket.gaierror) for cause in chain):
        return "host name not found"
    if isinstance(error, requests.ConnectionError):
        return "connection error"
    return type(error).__name__


def sample_once(http, url, identity, timeout):
    """Send one GET and return what happened as a Sample."""
    started = time.perf_counter()
    try:
        response = http.get(url, timeout=timeout)
    except requests.RequestException as error:
        return Sample(None, time.perf_counter() - started, error_kind(error))
    seconds = time.perf_counter() - started
    if not response.ok:
        return Sample(None, seconds, f"HTTP {response.status_code}")
    try:
        return Sample(identity.replica_of(response), seconds)
    except AnswerError as error:
        return Sample(None, seconds, str(error))


def check_url(url):
    """Raise TargetError unless the URL is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"{url!r} is not an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError as error:
        raise TargetError(f"{url!r} has a bad port: {error}") from None


def probe(url, identity, timeout):
    """Send one request first, so a target that cannot work fails with one clear reason."""
    check_url(url)
    with requests.Session() as http:
        try:
            response = http.get(url, timeout=timeout)
        except requests.exceptions.InvalidURL as error:
            raise TargetError(f"{url!r} is not a valid URL: {error}") from None
        except requests.RequestException as error:
            raise TargetError(f"cannot reach {url}: {error_kind(error)}") from None
    if response.status_code >= 500:
        # A balancer's failure is what the run measures: it is counted, not fatal.
        return
    if not response.ok:
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


def send_requests(
    url,
    *,
    requests_total=None,
    duration=None,
    concurrency=10,
    timeout=5.0,
    identity=BY_HOSTNAME,
    new_connections=False,
    on_sample=None,
):
    """Send GETs from `concurrency` clients, `requests_total` in all or for `duration` s."""
    if (requests_total is None) == (duration is None):
        raise ValueError("give either requests_total or duration")
    budget = Budget(requests_total, duration)
    samples = []
    lock = threading.Lock()

    def client():
        # One session per client thread: requests.Session is not shared across threads.
        with requests.Session() as http:
            if new_connections:
                http.headers["Connection"] = "close"
            while budget.take():
                sample = sample_once(http, url, identity, timeout)
                with lock:
                    samples.append(sample)
                if on_sample:
                    on_sample(sample)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        clients = [pool.submit(client) for _ in range(concurrency)]
        try:
            for running in clients:
                running.result()
        except BaseException:
            # Ctrl-C: let the clients finish the request in hand, then stop.
            budget.stopped.set()
            raise
    return samples
