"""The Flask gateway: one replica of the balanced service.

gunicorn loads it with ``gateway:create_app()``. Every replica answers ``/info``
with who it is, so a caller can see which replica served a request.
"""

import os
import socket
import time
from datetime import UTC, datetime

from flask import Flask, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

import gateway_faults
import gateway_metrics
import service
from gateway_logging import json_log_handler, log_format

__version__ = "1.0.0"

# Only these variables are read, and only the message is ever shown: nothing else
# from the environment can leak into a response.
DEFAULTS = {
    "APP_VERSION": __version__,
    "GATEWAY_MESSAGE": "",
    # gunicorn's master creates this file on SIGTERM (see gunicorn.conf.py).
    "GATEWAY_DRAIN_FLAG": "/dev/shm/gateway-draining",
    # The fault switch, written only through the Docker engine (gateway_faults.py).
    "GATEWAY_FAULT_FILE": gateway_faults.DEFAULT_FAULT_FILE,
    # Deployment-wide random faults, off unless set: a fraction of answers that are 500s,
    # and a delay range in milliseconds ("20-200").
    "GATEWAY_RANDOM_ERROR_RATE": "0",
    "GATEWAY_RANDOM_DELAY_MS": "",
}


def settings_from_environment():
    """Return the app's settings: the environment over the defaults."""
    return {name: os.environ.get(name, default) for name, default in DEFAULTS.items()}


def own_address(hostname):
    """Return the address other containers reach this one at, or None."""
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return None


def current_request_id():
    """The X-Request-ID nginx gave the request being handled, or None outside a request."""
    return request.headers.get("X-Request-ID") if has_request_context() else None


def utc_iso(timestamp):
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def create_app(test_config=None):
    """Create the gateway app; ``test_config`` overrides settings from the environment."""
    app = Flask(__name__)
    app.config.from_mapping(settings_from_environment())
    if test_config:
        app.config.from_mapping(test_config)
    app.json.sort_keys = False
    # nginx is exactly one hop in front: trust its X-Forwarded-* and nothing further.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)

    # What cannot change while the replica lives is worked out once, not per request.
    hostname = socket.gethostname()
    identity = {
        "hostname": hostname,
        "ip": own_address(hostname),
        "pid": os.getpid(),
        "version": app.config["APP_VERSION"],
    }
    started = time.time()
    started_at = utc_iso(started)
    message = app.config["GATEWAY_MESSAGE"] or None
    drain_flag = app.config["GATEWAY_DRAIN_FLAG"]

    gateway_metrics.instrument(app, hostname, identity["version"])
    # After the metrics' timer starts: a fault's answers and delays are counted and timed.
    random_faults = gateway_faults.RandomFaults.from_settings(
        app.config["GATEWAY_RANDOM_ERROR_RATE"], app.config["GATEWAY_RANDOM_DELAY_MS"]
    )
    gateway_faults.install(app, app.config["GATEWAY_FAULT_FILE"], random_faults)
    if log_format() == "json":
        # The app's own records (errors) as JSON lines too, with the request they belong to.
        app.logger.handlers = [json_log_handler(current_request_id)]

    @app.get("/info")
    def info():
        now = time.time()
        return {
            **identity,
            "started_at": started_at,
            "uptime_seconds": round(now - started, 3),
            "served_at": utc_iso(now),
            "request_id": request.headers.get("X-Request-ID"),
            "client": request.remote_addr,
            # Scheme, host and port as the client used them (nginx's X-Forwarded-*): what
            # url_for(..., _external=True) builds links from, https behind TLS.
            "url": request.base_url,
            "message": message,
        }

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        if os.path.exists(drain_flag):
            return {"status": "draining"}, 503
        return {"status": "ready"}

    # Your own routes (service/), served like the ones above.
    app.register_blueprint(service.blueprint)

    @app.after_request
    def name_the_replica(response):
        response.headers["X-Served-By"] = hostname
        # The id the replica logged, for callers that reach it without nginx.
        request_id = request.headers.get("X-Request-ID")
        if request_id:
            response.headers["X-Request-ID"] = request_id
        return response

    @app.errorhandler(HTTPException)
    def http_error_as_json(error):
        response = jsonify(error=error.name, status=error.code, message=error.description)
        response.status_code = error.code
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error_as_json(error):
        # Log the traceback for the operator; never send it to the client.
        app.logger.exception("unhandled error")
        return {"error": "Internal Server Error", "status": 500}, 500

    return app
