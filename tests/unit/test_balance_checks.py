"""balance_check's judgements beyond an even split: weights, sticky clients, HTTP/2
connections, drift per window, small samples, the JUnit report; no network."""

import io
import json
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from balance_check.checks import (
    connections_verdict,
    drift_verdict,
    stickiness_verdict,
    verdicts,
    windows_of,
)
from balance_check.cli import weights
from balance_check.report import as_json, junit_xml, render
from balance_check.sampling import Sample
from balance_check.statistics import (
    Expectations,
    distribution_verdict,
    expected_shares,
    requests_needed,
    summarize,
)


def result_of(samples):
    return summarize(samples, url="http://test/", named_by="test", concurrency=2, seconds=1)


def counted(counts):
    """A result where replica `name` answered `count` requests."""
    return result_of([Sample(name, 0.01) for name, count in counts.items() for _ in range(count)])


# --- Weights -------------------------------------------------------------------------------


def test_weights_by_name_or_in_name_order():
    assert weights("a=3, b=1") == {"a": 3.0, "b": 1.0}
    assert weights("1,4") == (1.0, 4.0)
    assert expected_shares(["b", "a"], (1, 3)) == ({"a": 0.25, "b": 0.75}, [])
    for bad in ("a=3,1", "a=x", "0,0", "-1,2"):
        with pytest.raises(Exception, match="weights|NAME=WEIGHT"):
            weights(bad)


def test_counts_in_the_configured_proportion_pass_and_the_wrong_ones_fail():
    result = counted({"canary": 10, "stable": 190})
    right = distribution_verdict(result, Expectations(weights={"canary": 1, "stable": 19}))
    assert right.passed, right
    assert "chi-square p = 1" in right.summary
    wrong = distribution_verdict(result, Expectations(weights={"canary": 1, "stable": 1}))
    assert wrong.failures[-1].startswith(
        "the requests do not fit a weighted split (canary 50.0%, stable 50.0%): "
        "got canary 5.0%, stable 95.0% (p = "
    )
    # The tolerance band is around each replica's weighted share, not an even one.
    assert wrong.failures[0].startswith("canary answered 10 requests, outside 50–150")


def test_a_replica_without_a_weight_or_a_weight_without_a_replica_fails():
    result = counted({"a": 100, "b": 100, "c": 5})
    verdict = distribution_verdict(result, Expectations(weights={"a": 1, "b": 1}))
    assert "c answered but has no weight in --expect-weights" in verdict.failures
    missing = distribution_verdict(counted({"a": 100}), Expectations(weights={"a": 1, "b": 1}))
    assert "b answered 0 requests, outside 25–75 (a weighted share of 50.0 ± 50%)" in (
        missing.failures
    )
    assert distribution_verdict(
        counted({"a": 9, "b": 9}), Expectations(weights=(1, 1, 1))
    ).failures[0] == ("3 weights were given for 2 replicas that answered")


# --- Small samples: cannot tell yet ----------------------------------------------------------


def test_too_few_requests_for_the_weights_cannot_tell_yet_and_says_how_many():
    # A 1 : 19 split needs 100 requests for the canary's 5 expected answers.
    assert requests_needed({"canary": 0.05, "stable": 0.95}) == 100
    few = distribution_verdict(
        counted({"canary": 0, "stable": 99}),
        Expectations(weights={"canary": 1, "stable": 19}, tolerance=1),
    )
    assert not few.failures
    assert few.cannot_tell == (
        "cannot tell yet whether the requests split as expected: need ≥ 100 requests "
        "(≥ 5 expected for each replica), got 99"
    )
    enough = distribution_verdict(
        counted({"canary": 0, "stable": 100}), Expectations(weights={"canary": 1, "stable": 19})
    )
    assert enough.cannot_tell is None
    assert enough.failures == (
        "canary answered 0 requests, outside 2–8 (a weighted share of 5.0 ± 50%)",
    )


def test_an_even_split_keeps_its_tolerance_band_on_small_samples():
    # The default, as before: no chi-square decision, so nothing to refuse.
    verdict = distribution_verdict(counted({"a": 3, "b": 3, "c": 3}), Expectations())
    assert verdict.passed


# --- Stickiness ----------------------------------------------------------------------------


def client_samples(paths, cookie="x"):
    """Samples of clients 1..K, each answering from the replicas of its path in turn."""
    return [
        Sample(replica, 0.01, client=client, at=client + n / 10, session=cookie)
        for client, path in enumerate(paths, start=1)
        for n, replica in enumerate(path)
    ]


def test_clients_that_stay_pass_and_each_move_is_named_with_when():
    staying = result_of(client_samples(["aaaa", "bbbb", "cccc"] * 4))
    verdict = stickiness_verdict(staying, "SRV")
    assert verdict.passed, verdict
    assert verdict.summary == "12 of 12 clients stayed on one replica (4–4 answers each)"

    moving = result_of(client_samples(["aaaa", "abbb", "bbbc"]))
    verdict = stickiness_verdict(moving)
    assert verdict.failures == (
        "client 2 moved from a to b at its request 2 (2.10 s into the run)",
        "client 3 moved from b to c at its request 4 (3.30 s into the run)",
    )


def test_many_moves_are_counted_after_the_first_five():
    verdict = stickiness_verdict(result_of(client_samples(["ab"] * 8)))
    assert len(verdict.failures) == 6
    assert verdict.failures[-1] == "… and 3 more clients moved"


def test_a_session_cookie_the_balancer_never_set_is_named():
    verdict = stickiness_verdict(result_of(client_samples(["aa", "bb"], cookie=None)), "SRV")
    assert verdict.failures == ("the balancer set no cookie SRV for 2 of 2 clients (clients 1, 2)",)


def test_one_answer_per_client_cannot_tell_whether_it_stays():
    verdict = stickiness_verdict(result_of(client_samples(["a", "b", "c"])))
    assert verdict.failures == ()
    assert verdict.cannot_tell.startswith(
        "cannot tell yet whether clients stay on one replica: need ≥ 2 answers per client "
        "(≥ 6 requests for 3 clients)"
    )


def test_sticky_clients_are_split_by_client_with_the_small_sample_rule():
    # 15 clients: 5 expected on each of 3 replicas, just enough.
    even = result_of(client_samples(["aa", "bb", "cc"] * 5))
    split, sticky = verdicts(even, Expectations(), sticky=True)
    assert split.passed and sticky.passed
    assert split.summary.startswith("15 clients over 3 replicas")
    lopsided = result_of(client_samples(["aa"] * 13 + ["bb", "cc"]))
    split, _ = verdicts(lopsided, Expectations(), sticky=True)
    assert split.failures[0].startswith("the clients do not fit an even split")
    few = result_of(client_samples(["aa", "bb", "cc"] * 3))
    split, _ = verdicts(few, Expectations(), sticky=True)
    assert split.cannot_tell.startswith("cannot tell yet whether the clients split as expected")
    assert "need ≥ 15 clients" in split.cannot_tell


# --- HTTP/2: requests or connections --------------------------------------------------------


def connection_samples(paths):
    return [
        Sample(replica, 0.01, client=n, at=i / 100, connection=f"127.0.0.1:{40000 + n}")
        for n, path in enumerate(paths)
        for i, replica in enumerate(path)
    ]


def test_connections_that_each_stay_on_one_replica_are_pinned():
    verdict = connections_verdict(result_of(connection_samples(["a" * 10, "b" * 10, "a" * 10])))
    assert verdict.failures == (
        "the balancer pins connections, not requests: each of the 3 HTTP/2 connections "
        "sent all its requests to one replica (a, a, b)",
    )


def test_connections_whose_streams_spread_are_balanced():
    verdict = connections_verdict(result_of(connection_samples(["ab" * 5, "ba" * 5])))
    assert verdict.passed
    assert verdict.summary == (
        "balances requests: 2 of 2 HTTP/2 connections spread their requests over 2–2 replicas"
    )


def test_short_connections_cannot_tell():
    verdict = connections_verdict(result_of(connection_samples(["a" * 9, "b" * 9])))
    assert verdict.cannot_tell.startswith(
        "cannot tell yet whether connections are pinned: need ≥ 10 requests on a connection, "
        "the busiest carried 9"
    )


# --- Drift ---------------------------------------------------------------------------------


def timed(schedule):
    """Samples from (second, replica, count) entries: `count` answers in that second."""
    return result_of(
        [
            Sample(replica, 0.01, at=second + n / (count + 1))
            for second, replica, count in schedule
            for n in range(count)
        ]
    )


def test_a_replica_that_left_for_two_windows_is_flagged_and_came_back():
    schedule = [
        (s, name, 10) for s in range(6) for name in "abc" if not (name == "b" and s in (2, 3))
    ]
    result = timed(schedule)
    windows = windows_of(result, Expectations(), 1)
    assert [window.out_of_range for window in windows] == [(), (), ("b",), ("b",), (), ()]
    verdict = drift_verdict(result, Expectations(), 1)
    assert verdict.failures == (
        "b's share fell below its expected 16.7%–50.0% from 2 s to 4 s (0.0%, 0.0%) and came back",
    )


def test_a_replica_gone_at_the_end_has_not_come_back():
    schedule = [(s, name, 10) for s in range(4) for name in "ab" if not (name == "b" and s == 3)]
    verdict = drift_verdict(timed(schedule), Expectations(), 1)
    # With two replicas, the one left alone is out of its range as well.
    assert verdict.failures == (
        "a's share rose above its expected 25.0%–75.0% from 3 s to 4 s (100.0%)"
        " and had not come back at the end",
        "b's share fell below its expected 25.0%–75.0% from 3 s to 4 s (0.0%)"
        " and had not come back at the end",
    )


def test_windows_too_small_to_judge_cannot_tell():
    verdict = drift_verdict(
        timed([(s, name, 2) for s in range(4) for name in "ab"]), Expectations(), 1
    )
    assert verdict.failures == ()
    assert verdict.cannot_tell.startswith("cannot tell yet how shares drift: no window of 1 s")


def test_drift_in_the_terminal_and_in_json():
    schedule = [(s, name, 10) for s in range(4) for name in "ab" if not (name == "b" and s == 1)]
    result = timed(schedule)
    expect = Expectations()
    found = verdicts(result, expect, window=1)
    output = io.StringIO()
    render(result, found, Console(file=output, width=100), expect, 1)
    text = output.getvalue()
    assert "share per 1 s, 0–4 s (red: out of range)" in text
    assert "FAIL: b's share fell below its expected 25.0%–75.0% from 1 s to 2 s (0.0%) and" in text
    document = json.loads(json.dumps(as_json(result, found, expect, 1)))
    assert [window["out_of_range"] for window in document["windows"]] == [[], ["a", "b"], [], []]
    assert document["ok"] is False


# --- JUnit ---------------------------------------------------------------------------------


def test_junit_has_one_test_case_per_check_with_the_failing_lines():
    result = result_of(client_samples(["aa", "ab", "bb"] * 5))
    found = verdicts(result, Expectations(), sticky=True, session_cookie="SRV") + [
        drift_verdict(timed([(0, "a", 1)]), Expectations(), 1)
    ]
    suite = ET.fromstring(ET.tostring(junit_xml(result, found).getroot()))
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["distribution", "stickiness", "drift"]
    assert cases["distribution"].find("failure") is None
    failure = cases["stickiness"].find("failure")
    assert (
        failure.get("message")
        == "client 2 moved from a to b at its request 2 (2.10 s into the run)"
    )
    assert len(failure.text.splitlines()) == 5
    assert cases["drift"].find("skipped").get("message").startswith("cannot tell yet")
    assert all(case.find("system-out").text for case in cases.values())


def test_json_carries_each_client_and_each_connection():
    sticky = result_of(client_samples(["aa", "ab"]))
    found = verdicts(sticky, Expectations(), sticky=True)
    clients = json.loads(json.dumps(as_json(sticky, found)))["clients"]
    assert [(client["client"], client["replicas"], client["moved"]) for client in clients] == [
        (1, ["a", "a"], None),
        (2, ["a", "b"], [2, 2.1, "a", "b"]),
    ]
    pinned = result_of(connection_samples(["a" * 10, "b" * 10]))
    document = json.loads(json.dumps(as_json(pinned, verdicts(pinned, Expectations()))))
    assert document["connections"] == {"127.0.0.1:40000": ["a"] * 10, "127.0.0.1:40001": ["b"] * 10}
    assert [check["check"] for check in document["checks"]] == ["distribution", "connections"]
    assert document["ok"] is False
