"""Check that a load balancer spreads requests evenly over its replicas.

result = check("http://localhost:8000/info", requests_total=500)
assert not unmet_expectations(result, Expectations(replicas=5))
"""

import time

from balance_check.sampling import BY_HOSTNAME, Identity, TargetError, probe, send_requests
from balance_check.statistics import BalanceResult, Expectations, summarize, unmet_expectations

__all__ = [
    "BalanceResult",
    "Expectations",
    "Identity",
    "TargetError",
    "check",
    "unmet_expectations",
]


def check(
    url,
    *,
    requests_total=None,
    duration=None,
    concurrency=10,
    timeout=5.0,
    identity=BY_HOSTNAME,
    new_connections=False,
    on_sample=None,
    verify=True,
):
    """Probe the URL, send the requests and return a BalanceResult; TargetError if it cannot.

    `verify`: for https, True (the system's CAs), a CA file's path, or False (no check).
    """
    probe(url, identity, timeout, verify)
    started = time.perf_counter()
    samples = send_requests(
        url,
        requests_total=requests_total,
        duration=duration,
        concurrency=concurrency,
        timeout=timeout,
        identity=identity,
        new_connections=new_connections,
        on_sample=on_sample,
        verify=verify,
    )
    return summarize(
        samples,
        url=url,
        named_by=identity.describe(),
        concurrency=concurrency,
        seconds=time.perf_counter() - started,
    )
