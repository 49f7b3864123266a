"""The balance-check command against a small local server: exit status, output, errors."""

import collections
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from balance_check.cli import main


class FakeReplicas(BaseHTTPRequestHandler):
    """Answers like a balancer over replicas r1, r2, r3 taken in turn; some paths misbehave."""

    # Each path has turns of its own: its first request (the probe) always goes to r1.
    turns = collections.defaultdict(itertools.count)
    lock = threading.Lock()

    def next_replica(self):
        with self.lock:
            return f"r{next(self.turns[self.path]) % 3 + 1}"

    def answer(self, status, body, content_type="application/json", headers=()):
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        replica = self.next_replica()
        if self.path == "/info":
            self.answer(200, json.dumps({"hostname": replica, "ip": "10.0.0.1"}))
        elif self.path == "/header":
            self.answer(200, "hello", "text/plain", [("X-Served-By", replica)])
        elif self.path == "/text":
            self.answer(200, "<html>hello</html>", "text/html")
        elif self.path == "/no-field":
            self.answer(200, json.dumps({"name": replica}))
        elif self.path == "/sometimes-503":
            # r3's turn fails: every third request.
            self.answer(503 if replica == "r3" else 200, json.dumps({"hostname": replica}))
        elif self.path == "/sick-r3":
            # Like a replica of this project: its error page has no `hostname` field, but
            # X-Served-By names it on every answer.
            if replica == "r3":
                self.answer(500, '{"error": "boom"}', headers=[("X-Served-By", replica)])
            else:
                self.answer(
                    200, json.dumps({"hostname": replica}), headers=[("X-Served-By", replica)]
                )
        elif self.path == "/balancer-502":
            # The balancer's own error page names no replica.
            if replica == "r3":
                self.answer(502, "<html>Bad Gateway</html>", "text/html")
            else:
                self.answer(200, json.dumps({"hostname": replica}))
        elif self.path == "/first-503":
            self.answer(503 if replica == "r1" else 200, json.dumps({"hostname": replica}))
        elif self.path == "/sometimes-slow":
            if replica == "r3":
                time.sleep(1)
            self.answer(200, json.dumps({"hostname": replica}))
        else:
            self.answer(404, "{}")

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that timed out closed its socket: nothing to report.
        pass


@pytest.fixture(scope="module")
def server():
    """A threaded HTTP server on 127.0.0.1; yields its base URL."""
    httpd = QuietServer(("127.0.0.1", 0), FakeReplicas)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(capsys, *argv):
    """Run the command in-process; return (exit status, stdout, stderr)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_an_even_split_over_the_expected_replicas_passes(server, capsys):
    status, out, err = run(capsys, f"{server}/info", "-n", "60", "--expect-replicas", "3")
    assert status == 0, out
    for replica in ("r1", "r2", "r3"):
        assert replica in out
    assert "33.3%" in out
    assert "PASS" in out
    assert err == ""


def test_a_wrong_replica_count_fails_and_says_why(server, capsys):
    status, out, _ = run(capsys, f"{server}/info", "-n", "30", "--expect-replicas", "4")
    assert status == 1
    assert "FAIL: expected 4 replicas, 3 answered" in out


def test_json_output_for_machines(server, capsys):
    status, out, _ = run(capsys, f"{server}/info", "-n", "30", "-c", "3", "--json")
    document = json.loads(out)
    assert status == 0
    assert document["ok"] is True
    assert document["requests"] == 30
    assert [replica["name"] for replica in document["replicas"]] == ["r1", "r2", "r3"]
    assert sum(replica["count"] for replica in document["replicas"]) == 30


def test_replica_named_by_a_header(server, capsys):
    status, out, _ = run(capsys, f"{server}/header", "-n", "30", "--header", "X-Served-By")
    assert status == 0, out
    assert "header X-Served-By" in out
    assert {"r1", "r2", "r3"} <= set(out.split())


def test_replica_named_by_several_fields(server, capsys):
    fields = ["--field", "hostname", "--field", "ip"]
    status, out, _ = run(capsys, f"{server}/info", "-n", "9", *fields)
    assert status == 0
    assert "r1 10.0.0.1" in out


def test_duration_instead_of_a_count(server, capsys):
    status, out, _ = run(capsys, f"{server}/info", "--duration", "0.5", "-c", "2", "--json")
    document = json.loads(out)
    assert status == 0
    assert document["requests"] > 0
    assert document["seconds"] >= 0.5


def errors_by_replica(document):
    return {replica["name"]: replica["errors"] for replica in document["replicas"]}


def test_failed_requests_are_counted_by_status_and_replica(server, capsys):
    status, out, _ = run(capsys, f"{server}/sometimes-503", "-n", "30", "-c", "1", "--json")
    document = json.loads(out)
    assert status == 1
    assert document["errors"] == {"HTTP 503": 10}
    assert document["unmet"] == ["10 requests failed, more than the 0 allowed"]
    # The error answers name their replica in the same JSON field: r3 gave all ten.
    assert errors_by_replica(document) == {"r1": 0, "r2": 0, "r3": 10}
    assert (document["requests"], document["answered"], document["failed"]) == (30, 30, 10)


def test_error_answers_are_attributed_by_x_served_by(server, capsys):
    status, out, _ = run(capsys, f"{server}/sick-r3", "-n", "30", "-c", "1")
    assert status == 1
    assert "Errors: 10 of 30 requests failed: 10 × HTTP 500; from r3 10." in out
    status, out, _ = run(capsys, f"{server}/sick-r3", "-n", "30", "-c", "1", "--json")
    document = json.loads(out)
    assert errors_by_replica(document) == {"r1": 0, "r2": 0, "r3": 10}
    # Each replica still got a third: the balancer is even, one backend is sick.
    assert [replica["count"] for replica in document["replicas"]] == [10, 10, 10]


def test_a_balancers_own_errors_name_no_replica(server, capsys):
    status, out, _ = run(capsys, f"{server}/balancer-502", "-n", "30", "-c", "1", "--json")
    document = json.loads(out)
    assert status == 1
    assert errors_by_replica(document) == {"r1": 0, "r2": 0}
    assert (document["requests"], document["answered"], document["failed"]) == (30, 20, 10)
    status, out, _ = run(capsys, f"{server}/balancer-502", "-n", "30", "-c", "1")
    assert "from no replica named 10." in out


def test_a_failing_first_answer_is_measured_not_fatal(server, capsys):
    status, out, _ = run(capsys, f"{server}/first-503", "-n", "3", "-c", "1", "--json")
    document = json.loads(out)
    assert status == 1
    assert document["errors"] == {"HTTP 503": 1}
    assert errors_by_replica(document) == {"r1": 1, "r2": 0, "r3": 0}


def test_timeouts_are_counted_as_timeouts(server, capsys):
    args = [f"{server}/sometimes-slow", "-n", "6", "-c", "1", "--timeout", "0.3", "--json"]
    status, out, _ = run(capsys, *args, "--max-errors", "6")
    document = json.loads(out)
    assert status == 0
    assert document["errors"] == {"timeout": 2}


def one_clear_line(err):
    assert err.startswith("balance-check: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def test_a_closed_port_is_one_clear_line(closed_port, capsys):
    status, out, err = run(capsys, f"http://127.0.0.1:{closed_port}/info")
    assert status == 2
    assert out == ""
    one_clear_line(err)
    assert "connection refused" in err


@pytest.mark.parametrize("url", ["localhost:8000/info", "ftp://localhost/info", "http://", "x"])
def test_a_bad_url_is_one_clear_line(url, capsys):
    status, _, err = run(capsys, url)
    assert status == 2
    one_clear_line(err)
    assert "URL" in err


def test_a_bad_port_is_one_clear_line(capsys):
    status, _, err = run(capsys, "http://localhost:99999/info")
    assert status == 2
    one_clear_line(err)
    assert "port" in err


def test_a_non_json_answer_is_one_clear_line(server, capsys):
    status, _, err = run(capsys, f"{server}/text")
    assert status == 2
    one_clear_line(err)
    assert "did not answer a JSON object (text/html)" in err
    assert "--header" in err


def test_a_missing_field_is_one_clear_line(server, capsys):
    status, _, err = run(capsys, f"{server}/no-field")
    assert status == 2
    one_clear_line(err)
    assert "without the field 'hostname' (it has: name)" in err


def test_a_missing_header_is_one_clear_line(server, capsys):
    status, _, err = run(capsys, f"{server}/info", "--header", "X-Backend")
    assert status == 2
    one_clear_line(err)
    assert "without the header X-Backend" in err


def test_an_error_status_is_one_clear_line(server, capsys):
    status, _, err = run(capsys, f"{server}/missing")
    assert status == 2
    one_clear_line(err)
    assert "answered HTTP 404" in err


def test_python_dash_m_runs_the_same_command(closed_port):
    command = [sys.executable, "-m", "balance_check", f"http://127.0.0.1:{closed_port}/info"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    one_clear_line(finished.stderr)


def test_cacert_must_be_a_readable_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["https://localhost:8443/info", "--cacert", str(tmp_path / "missing.crt")])
    assert exited.value.code == 2
    assert "missing.crt is not a file that can be read" in capsys.readouterr().err


def test_cacert_and_insecure_exclude_each_other(tmp_path, capsys):
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["https://localhost:8443/info", "--cacert", str(ca), "--insecure"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_expected_weights_pass_fail_or_cannot_tell_yet(server, capsys):
    # The fake balancer takes r1, r2, r3 in turn: an even split, so weights 1,1,1.
    status, out, _ = run(capsys, f"{server}/info", "-n", "60", "--expect-weights", "r1=1,r2=1,r3=1")
    assert status == 0, out
    status, out, _ = run(capsys, f"{server}/info", "-n", "60", "--expect-weights", "4,1,1")
    assert status == 1, out
    assert "FAIL: the requests do not fit a weighted split (r1 66.7%, r2 16.7%, r3 16.7%)" in out
    status, out, _ = run(capsys, f"{server}/info", "-n", "9", "--expect-weights", "1,1,1")
    assert status == 3, out
    assert "CANNOT TELL: cannot tell yet whether the requests split as expected: need ≥ 15" in out


def test_clients_that_move_fail_and_junit_is_written(server, capsys, tmp_path):
    junit = tmp_path / "balance.xml"
    session = ["--clients", "3", "-n", "30", "--session-header", "X-Session"]
    status, out, _ = run(capsys, f"{server}/info", *session, "--junit", str(junit))
    assert status == 1, out
    assert "FAIL: client 1 moved from r" in out
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert list(cases) == ["distribution", "stickiness"]
    assert cases["stickiness"].find("failure").get("message").startswith("client 1 moved")


def test_options_that_need_another_are_refused(server, capsys):
    for argv in (["--window", "1"], ["--session-cookie", "SRV"]):
        with pytest.raises(SystemExit) as refused:
            main([f"{server}/info", *argv])
        assert refused.value.code == 2
    assert "needs" in capsys.readouterr().err


def test_http2_against_a_server_that_only_speaks_http1_says_so(server, capsys):
    status, out, err = run(capsys, f"{server}/info", "--http2", "-n", "10")
    assert status == 2, out
    assert f"balance-check: {server}/info does not speak HTTP/2" in err
