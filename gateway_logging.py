"""Log lines a machine can read: one JSON object per line, or text for development.

``LOG_FORMAT=json`` (the default) or ``text``. gunicorn.conf.py names ``GunicornLogger``
as its logger class, so gunicorn's access and error lines follow it; the app sends its
own records through ``json_formatter()`` too (see gateway.py).
"""

import json
import logging
import os
import sys
import threading
import time

from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("json", "text")
# Access lines wait at most this long and leave in one write (see BatchedLines).
ACCESS_LOG_FLUSH_SECONDS = 0.2
# A pipe write up to this size is never mixed with another process's write.
PIPE_BUF = 4096


def log_format():
    """Return LOG_FORMAT from the environment: json unless it says text."""
    value = os.environ.get("LOG_FORMAT", "json").lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, not {value!r}")
    return value


def json_formatter():
    """One JSON object per record: time (UTC), level, logger, message, then any extra fields."""
    formatter = JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
    # The same ISO 8601 UTC time as nginx's log, to the millisecond.
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter


def status_code(status):
    """gunicorn's response status ("200 OK" or 200) as an int."""
    return int(str(status).split(None, 1)[0])


class BatchedLines:
    """Lines written together every ``interval`` seconds, not one system call each.

    Docker's log pipeline (containerd-shim, dockerd) pays for every write it is woken
    for: one write per request cost more CPU than the request itself
    (docs/performance.md). A crash loses at most ``interval`` seconds of lines; a graceful stop
    loses none (gunicorn.conf.py flushes at worker exit). Each write holds whole lines,
    at most PIPE_BUF bytes, so lines of workers that share the pipe never interleave.
    """

    def __init__(self, logger, interval=ACCESS_LOG_FLUSH_SECONDS):
        self.logger = logger
        self.interval = interval
        self.pending = []
        self.lock = threading.Lock()
        self.flusher = None

    def write(self, line):
        # Nothing inside the lock may wait: under gevent a wait switches to another
        # request, which would then block the whole worker on this (unpatched) lock.
        with self.lock:
            self.pending.append(line)
            start = self.flusher is None
            if start:
                # Made by the first request, so in the worker: threads do not survive fork.
                self.flusher = threading.Thread(
                    target=self.flush_forever, name="access-log", daemon=True
                )
        if start:
            self.flusher.start()

    def flush_forever(self):
        while True:
            time.sleep(self.interval)
            self.flush()

    def flush(self):
        with self.lock:
            lines, self.pending = self.pending, []
        if not lines:
            return
        chunks, chunk = [], ""
        for line in lines:
            # json.dumps escapes everything outside ASCII: characters are bytes here.
            if chunk and len(chunk) + len(line) > PIPE_BUF:
                chunks.append(chunk)
                chunk = ""
            chunk += line
        if chunk:
            chunks.append(chunk)
        for handler in self.logger.handlers:
            for chunk in chunks:
                handler.stream.write(chunk)
            handler.flush()


class GunicornLogger(glogging.Logger):
    """gunicorn's logger; with LOG_FORMAT=json every line is one JSON object."""

    def setup(self, cfg):
        super().setup(cfg)
        self.json = log_format() == "json"
        if self.json:
            for handler in self.error_log.handlers + self.access_log.handlers:
                handler.setFormatter(json_formatter())
        self.access_lines = BatchedLines(self.access_log)

    def access(self, resp, req, environ, request_time):
        if not self.json:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        # One line per request, so built by hand: through logging and its JSON formatter
        # it cost a fifth of the replica's CPU (docs/performance.md). Same fields, same
        # order as json_formatter() writes. Read straight from the environ: gunicorn's
        # atoms() would copy every header.
        now = time.time()
        line = json.dumps(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int(now % 1 * 1000):03d}Z",
                "level": "INFO",
                "logger": "gunicorn.access",
                "message": "request",
                "request_id": environ.get("HTTP_X_REQUEST_ID"),
                # The app's ProxyFix has replaced nginx's address with the caller's.
                "client": environ.get("REMOTE_ADDR"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("RAW_URI"),
                "status": status_code(resp.status),
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "user_agent": environ.get("HTTP_USER_AGENT"),
            }
        )
        self.access_lines.write(line + "\n")
        return None


def json_log_handler(request_id):
    """A stderr handler writing JSON lines that carry ``request_id()``, the current request's id."""

    def add_request_id(record):
        record.request_id = request_id()
        return True

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    handler.addFilter(add_request_id)
    return handler
