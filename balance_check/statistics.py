"""From samples to the answer: each replica's share, how fair the split is, how fast."""

from collections import Counter
from dataclasses import dataclass

import numpy
from scipy.stats import chisquare

# Below this p-value an even split is an unlikely explanation of the counts.
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Latency:
    """Percentiles of answered requests' latency, in seconds."""

    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds):
        """Return the latency of these durations, or None when there are none."""
        if not seconds:
            return None
        p50, p95, p99 = numpy.percentile(seconds, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(max(seconds)))


@dataclass(frozen=True)
class ReplicaShare:
    """One replica: how many requests it answered, their share, how fast, how many failed.

    `count` is every answer that named the replica, error answers included: where the
    balancer sent requests. `errors` says how many of them were errors.
    """

    name: str
    count: int
    share: float
    latency: Latency
    errors: int = 0


@dataclass(frozen=True)
class Fairness:
    """How far the split is from even: busiest vs idlest, and a chi-square test."""

    busiest: int
    idlest: int
    even_share: float
    p_value: float | None

    @property
    def spread(self):
        return self.busiest - self.idlest

    def in_words(self):
        """Say what the counts mean for a person who does not read p-values."""
        if self.p_value is None:
            return "only one replica answered: there is no split to judge"
        if self.p_value >= SIGNIFICANCE:
            return f"an even split explains these counts (p = {self.p_value:.2f})"
        if self.p_value >= 0.001:
            return f"an even split is unlikely (p = {self.p_value:.3f}): some replicas get more"
        return f"far from an even split (p = {self.p_value:.1e}): some replicas get more"


@dataclass(frozen=True)
class BalanceResult:
    """What a run found: replicas in name order, errors by kind, latency, fairness."""

    url: str
    named_by: str
    concurrency: int
    seconds: float
    requests: int
    replicas: tuple[ReplicaShare, ...]
    errors: dict[str, int]
    latency: Latency | None
    fairness: Fairness | None

    @property
    def answered(self):
        return sum(replica.count for replica in self.replicas)

    @property
    def failed(self):
        return sum(self.errors.values())

    @property
    def unattributed(self):
        """Failed requests that named no replica (timeouts, the balancer's own errors)."""
        return self.failed - sum(replica.errors for replica in self.replicas)

    @property
    def counts(self):
        """Replica name -> requests it answered."""
        return {replica.name: replica.count for replica in self.replicas}


def fairness_of(counts):
    """Compare the counts with an even split; None when nothing was answered."""
    if not counts:
        return None
    # chisquare's expected frequencies default to the mean: exactly an even split.
    p_value = float(chisquare(counts).pvalue) if len(counts) > 1 else None
    return Fairness(max(counts), min(counts), sum(counts) / len(counts), p_value)


def summarize(samples, *, url, named_by, concurrency, seconds):
    """Turn the samples of one run into a BalanceResult."""
    latencies = {}
    failures = Counter()
    for sample in samples:
        if sample.replica is not None:
            latencies.setdefault(sample.replica, []).append(sample.seconds)
            if sample.error:
                failures[sample.replica] += 1
    answered = sum(len(durations) for durations in latencies.values())
    # Sorted by name, so a replica keeps its row from one run to the next.
    replicas = tuple(
        ReplicaShare(
            name, len(durations), len(durations) / answered, Latency.of(durations), failures[name]
        )
        for name, durations in sorted(latencies.items())
    )
    errors = Counter(sample.error for sample in samples if sample.error)
    return BalanceResult(
        url=url,
        named_by=named_by,
        concurrency=concurrency,
        seconds=seconds,
        requests=len(samples),
        replicas=replicas,
        errors=dict(errors.most_common()),
        latency=Latency.of([s.seconds for s in samples if s.replica is not None]),
        fairness=fairness_of([replica.count for replica in replicas]),
    )


@dataclass(frozen=True)
class Expectations:
    """What must hold for a run to pass."""

    replicas: int | None = None
    # Each replica must answer within (1 ± tolerance) × an even share.
    tolerance: float = 0.5
    max_errors: int = 0
    min_p_value: float | None = None


def unmet_expectations(result, expect):
    """Return why the run fails the expectations, one sentence each; empty when it passes."""
    if not result.replicas:
        return [f"no request was answered ({result.failed} failed)"]
    unmet = []
    if expect.replicas is not None and len(result.replicas) != expect.replicas:
        unmet.append(f"expected {expect.replicas} replicas, {len(result.replicas)} answered")
    even = result.fairness.even_share
    low, high = (1 - expect.tolerance) * even, (1 + expect.tolerance) * even
    for replica in result.replicas:
        if not low <= replica.count <= high:
            unmet.append(
                f"{replica.name} answered {replica.count} requests, outside {low:.0f}–{high:.0f} "
                f"(an even share of {even:.1f} ± {expect.tolerance:.0%})"
            )
    if result.failed > expect.max_errors:
        unmet.append(f"{result.failed} requests failed, more than the {expect.max_errors} allowed")
    p_value = result.fairness.p_value
    if expect.min_p_value is not None and p_value is not None and p_value < expect.min_p_value:
        unmet.append(f"p = {p_value:.3g} is below the minimum of {expect.min_p_value}")
    return unmet
