"""Check that a load balancer spreads requests evenly over its replicas.

result = check("http://localhost:8000/info", requests_total=500)
assert not unmet_expectations(result, Expectations(replicas=5))
"""

import time

from balance_check.sampling import (
    BY_HOSTNAME,
    CONCURRENCY,
    Identity,
    TargetError,
    probe,
    send_requests,
)
from balance_check.statistics import BalanceResult, Expectations, summarize, unmet_expectations

__all__ = [
    "BalanceResult",
    "Expectations",
    "Identity",
    "TargetError",
    "check",
    "unmet_expectations",
]


def check(url, *, identity=BY_HOSTNAME, timeout=5.0, verify=True, **sampling):
    """Probe the URL, send the requests and return a BalanceResult; TargetError if it cannot.

    `sampling`: how to send them, as send_requests takes it (requests_total or duration,
    concurrency, new_connections, on_sample, http2, session_key). `verify`: for https, True
    (the system's CAs), a CA file's path, or False (no check).
    """
    probe(url, identity, timeout, verify, http2=sampling.get("http2", False))
    started = time.perf_counter()
    samples = send_requests(url, identity=identity, timeout=timeout, verify=verify, **sampling)
    return summarize(
        samples,
        url=url,
        named_by=identity.describe(),
        concurrency=sampling.get("concurrency", CONCURRENCY),
        seconds=time.perf_counter() - started,
    )
