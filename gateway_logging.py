"""Log lines a machine can read: one JSON object per line, or text for development.

``LOG_FORMAT=json`` (the default) or ``text``. gunicorn.conf.py names ``GunicornLogger``
as its logger class, so gunicorn's access and error lines follow it; the app sends its
own records through ``json_formatter()`` too (see gateway.py).
"""

import logging
import os
import sys
import time

from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

LOG_FORMATS = ("json", "text")


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


class GunicornLogger(glogging.Logger):
    """gunicorn's logger; with LOG_FORMAT=json every line is one JSON object."""

    def setup(self, cfg):
        super().setup(cfg)
        self.json = log_format() == "json"
        if self.json:
            for handler in self.error_log.handlers + self.access_log.handlers:
                handler.setFormatter(json_formatter())

    def access(self, resp, req, environ, request_time):
        if not self.json:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return None
        # Read straight from the environ: gunicorn's atoms() would copy every header.
        self.access_log.info(
            "request",
            extra={
                "request_id": environ.get("HTTP_X_REQUEST_ID"),
                # The app's ProxyFix has replaced nginx's address with the caller's.
                "client": environ.get("REMOTE_ADDR"),
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("RAW_URI"),
                "status": status_code(resp.status),
                "bytes": getattr(resp, "sent", None),
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "user_agent": environ.get("HTTP_USER_AGENT"),
            },
        )
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
