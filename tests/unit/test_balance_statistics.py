"""balance_check's arithmetic: shares, fairness, latency and the expectations, no network."""

import io
import json

import pytest
from rich.console import Console

from balance_check.report import as_json, render
from balance_check.sampling import Sample
from balance_check.statistics import (
    Expectations,
    distribution_verdict,
    summarize,
    unmet_expectations,
)


def result_of(counts, errors=(), seconds=0.01):
    """A result where replica `name` answered `count` requests, each taking `seconds`."""
    samples = [Sample(name, seconds) for name, count in counts.items() for _ in range(count)]
    samples += [Sample(None, seconds, kind) for kind in errors]
    return summarize(samples, url="http://test/info", named_by="test", concurrency=2, seconds=1)


def test_replicas_are_ordered_by_name_with_their_shares():
    result = result_of({"c": 25, "a": 50, "b": 25})
    assert [replica.name for replica in result.replicas] == ["a", "b", "c"]
    assert [replica.share for replica in result.replicas] == [0.5, 0.25, 0.25]
    assert result.counts == {"a": 50, "b": 25, "c": 25}
    assert (result.answered, result.failed, result.requests) == (100, 0, 100)


def test_errors_are_counted_by_kind_and_left_out_of_shares():
    result = result_of({"a": 8}, errors=["timeout", "HTTP 502", "timeout"])
    assert result.errors == {"timeout": 2, "HTTP 502": 1}
    assert result.replicas[0].share == 1.0
    assert (result.answered, result.failed) == (8, 3)


def test_named_errors_are_attributed_to_their_replica():
    samples = [Sample("a", 0.01)] * 6 + [Sample("b", 0.01)] * 2 + [Sample("b", 0.3, "HTTP 500")] * 4
    samples += [Sample(None, 5.0, "timeout")]
    result = summarize(samples, url="u", named_by="t", concurrency=1, seconds=1)
    a, b = result.replicas
    # b got its even share of the requests; four of its six answers were errors.
    assert (a.count, a.errors, b.count, b.errors) == (6, 0, 6, 4)
    assert result.errors == {"HTTP 500": 4, "timeout": 1}
    assert (result.requests, result.answered, result.failed, result.unattributed) == (13, 12, 5, 1)
    # Its latency is that of every answer it gave, the slow errors included.
    assert b.latency.max == 0.3


def test_latency_percentiles_overall_and_per_replica():
    samples = [Sample("a", n / 1000) for n in range(1, 101)] + [Sample("b", 1.0)]
    result = summarize(samples, url="u", named_by="t", concurrency=1, seconds=1)
    a, b = result.replicas
    assert a.latency.p50 == pytest.approx(0.0505)
    assert a.latency.p99 == pytest.approx(0.09901)
    assert a.latency.max == 0.1
    assert b.latency.p50 == b.latency.max == 1.0
    assert result.latency.max == 1.0


def test_an_even_split_fits_and_a_skewed_one_does_not():
    even = result_of({"a": 100, "b": 100, "c": 100}).fairness
    assert even.p_value == pytest.approx(1.0)
    assert (even.busiest, even.idlest, even.spread) == (100, 100, 0)
    assert "an even split explains" in even.in_words()

    skewed = result_of({"a": 200, "b": 50, "c": 50}).fairness
    assert skewed.p_value < 1e-6
    assert (skewed.busiest, skewed.idlest, skewed.spread) == (200, 50, 150)
    assert "far from an even split" in skewed.in_words()


def test_one_replica_has_no_split_to_judge():
    fairness = result_of({"a": 10}).fairness
    assert fairness.p_value is None
    assert "only one replica" in fairness.in_words()


def test_expectations_hold_for_an_even_split():
    result = result_of({"a": 100, "b": 100, "c": 100, "d": 100, "e": 100})
    assert unmet_expectations(result, Expectations(replicas=5)) == []


def test_a_wrong_replica_count_is_unmet():
    result = result_of({"a": 100, "b": 100, "c": 100, "d": 100, "e": 100})
    assert unmet_expectations(result, Expectations(replicas=6)) == [
        "expected 6 replicas, 5 answered"
    ]


def test_a_replica_outside_the_tolerance_is_named():
    result = result_of({"a": 60, "b": 110, "c": 130})
    assert unmet_expectations(result, Expectations(tolerance=0.5)) == []
    (reason,) = unmet_expectations(result, Expectations(tolerance=0.35))
    assert reason.startswith("a answered 60 requests, outside 65–135")


def test_errors_fail_unless_allowed():
    result = result_of({"a": 10, "b": 10}, errors=["timeout"])
    assert unmet_expectations(result, Expectations()) == [
        "1 requests failed, more than the 0 allowed"
    ]
    assert unmet_expectations(result, Expectations(max_errors=1)) == []


def test_a_minimum_p_value_can_be_asked_for():
    result = result_of({"a": 130, "b": 70})
    assert unmet_expectations(result, Expectations()) == []
    (reason,) = unmet_expectations(result, Expectations(min_p_value=0.05))
    assert reason.startswith("the requests do not fit an even split (a 50.0%, b 50.0%)")
    assert reason.endswith("(p = 2.21e-05 < 0.05)")


def test_nothing_answered_is_unmet():
    result = result_of({}, errors=["connection refused"] * 3)
    assert unmet_expectations(result, Expectations()) == ["no request was answered (3 failed)"]
    assert result.fairness is None


def test_report_shows_every_replica_in_order_and_the_verdict():
    result = result_of({"b": 20, "a": 20}, errors=["HTTP 503"])
    verdict = distribution_verdict(result, Expectations(replicas=3))
    output = io.StringIO()
    render(result, [verdict], Console(file=output, width=100))
    text = output.getvalue()
    assert text.index("a ") < text.index("b ")
    assert "50.0%" in text
    assert "1 of 41 requests failed: 1 × HTTP 503" in text
    assert "FAIL: expected 3 replicas, 2 answered" in text
    assert "PASS" not in text


def test_json_report_is_plain_data():
    result = result_of({"a": 3, "b": 1})
    verdict = distribution_verdict(result, Expectations())
    document = json.loads(json.dumps(as_json(result, [verdict])))
    assert document["ok"] is True
    assert [(r["name"], r["count"]) for r in document["replicas"]] == [("a", 3), ("b", 1)]
    assert document["fairness"]["spread"] == 2
    assert document["latency_seconds"]["max"] == 0.01
