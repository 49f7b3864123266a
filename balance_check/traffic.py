"""Steady concurrent GET traffic through a balancer that records every request's outcome.

What the chaos, fault and cluster tests measure with, and `make demo` (scripts/demo.py).
"""

import re
import threading
import time
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended, its status (None: transport error), its replica.

    `upstream` is nginx's X-Upstream-Addr (every replica tried, the answering one last);
    `served_by` the X-Served-By of the replica that answered, error answers included.
    """

    started: float
    finished: float
    status: int | None
    error: str | None
    upstream: str
    served_by: str = ""

    @property
    def seconds(self):
        return self.finished - self.started

    @property
    def tried(self):
        """The addresses nginx tried, in order, the answering one last."""
        return [address for address in re.split(r",\s*|\s+:\s+", self.upstream) if address]

    @property
    def ok(self):
        return self.status is not None and 200 <= self.status < 300


class SteadyTraffic:
    """`clients` threads GET `url` (back to back, or at most `rate` per second each), each on a
    new connection, until the block ends.

    A new connection per request (Connection: close) means every request is balanced anew,
    as a crowd of different users would be.
    """

    def __init__(self, url, clients=6, timeout=30, verify=True, rate=None):
        self.url = url
        self.clients = clients
        # At most this many requests per second per client (None: back to back).
        self.rate = rate
        # For https: requests' own `verify` (True, a CA file's path, or False).
        self.verify = verify
        # Longer than nginx's whole retry budget (proxy_next_upstream_timeout): a failure
        # counted here is one the gateway gave, not the client's impatience.
        self.timeout = timeout
        self.outcomes = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def __enter__(self):
        self.began = time.monotonic()
        self._threads = [
            threading.Thread(target=self._client, name=f"client-{n}", daemon=True)
            for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.ended = time.monotonic()

    def _client(self):
        with requests.Session() as http:
            http.headers["Connection"] = "close"
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    # verify per request: the environment's CA bundle beats a session's.
                    response = http.get(self.url, timeout=self.timeout, verify=self.verify)
                    status, error = response.status_code, None
                    upstream = response.headers.get("X-Upstream-Addr", "")
                    served_by = response.headers.get("X-Served-By", "")
                except requests.RequestException as exc:
                    status, error, upstream = None, f"{type(exc).__name__}: {exc}", ""
                    served_by = ""
                outcome = Outcome(started, time.monotonic(), status, error, upstream, served_by)
                with self._lock:
                    self.outcomes.append(outcome)
                if self.rate:
                    self._stop.wait(max(0.0, 1 / self.rate - outcome.seconds))

    def run_for(self, seconds):
        """Let traffic flow for `seconds` (inside the block)."""
        time.sleep(seconds)

    @property
    def failures(self):
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def longest_gap(self):
        """The longest stretch, in seconds, in which no request got a 2xx answer."""
        answered = sorted(outcome.finished for outcome in self.outcomes if outcome.ok)
        edges = [self.began, *answered, self.ended]
        return max(later - earlier for earlier, later in zip(edges, edges[1:], strict=False))

    def summary(self, scenario):
        """One line for the report: requests sent, failed, and the longest gap."""
        statuses = sorted({str(outcome.status or outcome.error) for outcome in self.failures})
        line = (
            f"{scenario}: sent={len(self.outcomes)} failed={len(self.failures)} "
            f"longest_gap={self.longest_gap():.2f}s duration={self.ended - self.began:.1f}s"
        )
        return line + (f" failures={statuses[:5]}" if statuses else "")
