"""Prometheus metrics of one replica at /metrics, whatever gunicorn worker answers.

gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR before the app (and so prometheus_client)
is imported: every worker then writes its counts to files there and /metrics adds them
up, so the numbers are the replica's, not one worker's. Without it (Flask's test client,
one process) the counts stay in the process.
"""

import os
import time

from flask import g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    multiprocess,
)

# Requests that matched no route share one label: a raw path would let any client
# create a new time series per URL.
UNMATCHED = "unmatched"


def instrument(app, hostname, version):
    """Count ``app``'s requests by route and status, time them, and serve /metrics."""
    exposed = CollectorRegistry()
    multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiprocess_dir:
        # Every worker writes its values to files there; /metrics adds them all up.
        multiprocess.MultiProcessCollector(exposed, multiprocess_dir)
        own = CollectorRegistry()
    else:
        own = exposed
    requests_total = Counter(
        "gateway_http_requests",
        "Requests answered, by route rule and status code.",
        ["endpoint", "status"],
        registry=own,
    )
    duration = Histogram(
        "gateway_http_request_duration_seconds",
        "Seconds from routing to response, by route rule.",
        ["endpoint"],
        registry=own,
    )
    in_flight = Gauge(
        "gateway_http_requests_in_flight",
        "Requests being handled right now.",
        registry=own,
        multiprocess_mode="livesum",
    )
    # Constant for the replica, so any worker may report it: it is read in-process
    # (Info cannot go through the multiprocess files).
    Info("gateway_replica", "Which replica this is.", registry=exposed).info(
        {"hostname": hostname, "version": version}
    )

    @app.before_request
    def start_timer():
        g.metrics_started = time.perf_counter()
        in_flight.inc()

    @app.after_request
    def count_request(response):
        started = g.get("metrics_started")
        if started is None:
            return response
        endpoint = request.url_rule.rule if request.url_rule else UNMATCHED
        duration.labels(endpoint).observe(time.perf_counter() - started)
        requests_total.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.teardown_request
    def end_in_flight(error):
        if "metrics_started" in g:
            in_flight.dec()

    @app.get("/metrics")
    def metrics():
        return generate_latest(exposed), 200, {"Content-Type": CONTENT_TYPE_LATEST}
