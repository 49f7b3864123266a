"""Flask's own cost: WSGI callables called in-process, CPU per call, no server at all.

`make bench` runs it inside the app image (same Python, same packages, instrumentation
on) with `docker run`, and prints one JSON line. Each variant answers a prepared GET
/info environ, the headers nginx sends included, many times; the figure is the
median of a few batches of time.process_time() ÷ calls, so other work on the machine
adds little (only cache misses it causes).

    python3 flask_cost.py [CALLS]

The variants, each adding one layer, so their differences are measured, not guessed:
a bare WSGI callable (the loop's own cost), Flask with one route returning a constant
dict (JSON keys sorted, Flask's default, and not), and this app as gunicorn loads it.
"""

import gc
import json
import statistics
import sys
import time

from flask import Flask
from werkzeug.test import EnvironBuilder

import gateway

BATCHES = 5
# The headers the stack's nginx adds to every proxied request (nginx/nginx.conf.template).
HEADERS = {
    "Host": "127.0.0.1:8000",
    "X-Forwarded-For": "172.18.0.1",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Host": "127.0.0.1:8000",
    "X-Request-ID": "0123456789abcdef0123456789abcdef",
    "User-Agent": "wrk",
}
IDENTITY = {"hostname": "replica", "ip": "172.18.0.2", "pid": 1, "version": "1.0.0"}


def bare(environ, start_response):
    body = json.dumps(IDENTITY).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def minimal_flask(sort_keys):
    app = Flask("minimal")
    app.json.sort_keys = sort_keys

    @app.get("/info")
    def info():
        return IDENTITY

    return app


def call(app, environ):
    """What a server does per request: a fresh environ, start_response, the body, close()."""
    seen = []
    body = app(dict(environ), lambda status, headers, exc_info=None: seen.append(status))
    for _chunk in body:
        pass
    if hasattr(body, "close"):
        body.close()
    return seen[0]


def ms_per_call(app, environ, calls):
    status = call(app, environ)
    if not status.startswith("200"):
        raise SystemExit(f"flask_cost: /info answered {status}")
    for _ in range(calls // 10):  # warm-up: lazy imports, caches
        call(app, environ)
    batches = []
    for _ in range(BATCHES):
        began = time.process_time()
        for _ in range(calls):
            call(app, environ)
        batches.append(1000 * (time.process_time() - began) / calls)
    return statistics.median(batches)


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    environ = EnvironBuilder(path="/info", headers=HEADERS).get_environ()
    variants = {
        "bare WSGI callable": bare,
        "Flask, sorted JSON keys": minimal_flask(sort_keys=True),
        "Flask": minimal_flask(sort_keys=False),
        "this app": gateway.create_app(),
    }
    result = {"calls": calls * BATCHES, "python": sys.version.split()[0]}
    result["gc_threshold"] = gc.get_threshold()
    result["ms_per_call"] = {
        name: ms_per_call(app, environ, calls) for name, app in variants.items()
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
