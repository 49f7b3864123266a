"""Log lines a machine can read: gunicorn's and the app's, as JSON or as text."""

import json
import logging
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from gateway import create_app
from gateway_logging import PIPE_BUF, BatchedLines, GunicornLogger, json_formatter, log_format


def gunicorn_logger():
    """gunicorn's logger as gunicorn.conf.py configures it: access lines to stdout."""
    config = Config()
    config.set("accesslog", "-")
    config.set("errorlog", "-")
    return GunicornLogger(config)


def log_access(logger, request_id="trace-0123456789"):
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/info?x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "172.18.0.9",
        "HTTP_X_FORWARDED_FOR": "203.0.113.7",
        "HTTP_X_REQUEST_ID": request_id,
        "HTTP_USER_AGENT": 'curl/8 "quoted"',
    }
    response = SimpleNamespace(status="200 OK", sent=241, headers=[])
    request = SimpleNamespace(headers=[("X-Request-ID", request_id)])
    logger.access(response, request, environ, timedelta(milliseconds=12, microseconds=345))


def test_access_line_is_one_json_object_with_the_request(monkeypatch, capsys):
    monkeypatch.setenv("LOG_FORMAT", "json")
    logger = gunicorn_logger()
    log_access(logger)
    logger.access_lines.flush()
    (line,) = capsys.readouterr().out.splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "gunicorn.access"
    assert entry["request_id"] == "trace-0123456789"
    assert entry["method"] == "GET"
    assert entry["path"] == "/info?x=1"
    assert entry["status"] == 200
    assert entry["bytes"] == 241
    assert entry["duration_ms"] == 12.345
    assert entry["client"] == "172.18.0.9"
    assert entry["user_agent"] == 'curl/8 "quoted"'
    assert entry["time"].endswith("Z")


class RecordingStream:
    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append(text)

    def flush(self):
        pass


def recording_logger():
    stream = RecordingStream()
    return SimpleNamespace(handlers=[logging.StreamHandler(stream)]), stream


def test_access_lines_wait_for_one_batched_write():
    logger, stream = recording_logger()
    lines = BatchedLines(logger, interval=0.05)
    for number in range(3):
        lines.write(f"line {number}\n")
    assert stream.writes == []
    deadline = time.monotonic() + 5
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.writes == ["line 0\nline 1\nline 2\n"]


def test_batched_writes_hold_whole_lines_and_fit_a_pipe_write():
    logger, stream = recording_logger()
    lines = BatchedLines(logger, interval=60)
    sent = [f'{{"n": {number}, "pad": "{"x" * 300}"}}\n' for number in range(100)]
    for line in sent:
        lines.write(line)
    lines.flush()
    assert "".join(stream.writes) == "".join(sent)
    assert len(stream.writes) > 1
    for write in stream.writes:
        assert len(write.encode()) <= PIPE_BUF
        assert write.endswith("\n")


def test_error_lines_are_json(monkeypatch, capsys):
    monkeypatch.setenv("LOG_FORMAT", "json")
    gunicorn_logger().warning("worker %s timed out", 42)
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert (entry["level"], entry["logger"]) == ("WARNING", "gunicorn.error")
    assert entry["message"] == "worker 42 timed out"


def test_text_format_keeps_gunicorns_own_lines(monkeypatch, capsys):
    monkeypatch.setenv("LOG_FORMAT", "text")
    logger = gunicorn_logger()
    logger.cfg.set("access_log_format", "%(s)s request_id=%({x-request-id}i)s")
    log_access(logger, request_id="dev-trace-42")
    assert capsys.readouterr().out == "200 request_id=dev-trace-42\n"


def test_unknown_log_format_is_refused(monkeypatch):
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        log_format()


def test_formatter_escapes_what_would_break_a_line():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, 'a "b"\nc', None, None)
    line = json_formatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == 'a "b"\nc'


def test_app_errors_are_json_with_the_request_id(monkeypatch, capsys):
    monkeypatch.setenv("LOG_FORMAT", "json")
    app = create_app({"TESTING": True})

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    app.test_client().get("/boom", headers={"X-Request-ID": "trace-boom-0001"})
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (entry,) = [line for line in lines if line["message"] == "unhandled error"]
    assert entry["level"] == "ERROR"
    assert entry["request_id"] == "trace-boom-0001"
    assert "RuntimeError: secret internals" in entry["exc_info"]
