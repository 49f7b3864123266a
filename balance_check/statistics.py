"""From samples to the answer: each replica's share, how fair the split is, how fast."""

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy
from scipy.stats import chisquare

# Below this p-value an even split is an unlikely explanation of the counts.
SIGNIFICANCE = 0.05
# Below this p-value the counts do not fit the expected shares: the run fails. Strict, so a
# balancer that picks at random fails a correct configuration once in a thousand runs, not
# once in twenty.
MISFIT = 0.001
# Chi-square's approximation needs about this many expected counts in every cell (Cochran's
# rule); with fewer the test would guess, and the checker says it cannot tell yet.
MIN_EXPECTED = 5


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
    # Every request as sent, in the order sent: for stickiness, connections and drift.
    samples: tuple = field(default=(), repr=False, compare=False)

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
        samples=tuple(samples),
    )


@dataclass(frozen=True)
class Expectations:
    """What must hold for a run to pass."""

    replicas: int | None = None
    # Each replica must answer within (1 ± tolerance) × its expected share.
    tolerance: float = 0.5
    max_errors: int = 0
    min_p_value: float | None = None
    # The share each replica should get: {name: weight}, or weights for the replicas in
    # name order (the table's order). None: an even split.
    weights: dict | tuple | None = None


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: what it found, why it fails, or why it cannot tell yet."""

    check: str
    summary: str
    failures: tuple[str, ...] = ()
    cannot_tell: str | None = None

    @property
    def passed(self):
        return not self.failures and self.cannot_tell is None


def expected_shares(names, weights):
    """Each replica's expected share, and the reasons the weights do not match the names.

    `weights` as Expectations takes them; a replica that answered but has no weight is
    expected to get nothing.
    """
    if weights is None:
        return {name: 1 / len(names) for name in names}, []
    problems = []
    if not isinstance(weights, dict):
        if len(weights) != len(names):
            problems.append(
                f"{len(weights)} weights were given for {len(names)} replicas that answered"
            )
        weights = dict(zip(sorted(names), weights, strict=False))
    total = sum(weights.values())
    shares = {name: weights.get(name, 0) / total for name in sorted({*names, *weights})}
    problems += [
        f"{name} answered but has no weight in --expect-weights"
        for name in names
        if name not in weights
    ]
    return shares, problems


def weights_text(shares):
    return ", ".join(f"{name} {share:.1%}" for name, share in shares.items())


def requests_needed(shares):
    """How many there must be for every expected count to reach MIN_EXPECTED."""
    smallest = min(share for share in shares.values() if share > 0)
    return math.ceil(MIN_EXPECTED / smallest - 1e-9)


def fit(counts, shares):
    """Chi-square p-value of `counts` against `shares`, or None when the sample is too small.

    Replicas expected to get nothing are left to the caller: any count there is a failure.
    """
    expected_names = [name for name, share in shares.items() if share > 0]
    total = sum(counts.get(name, 0) for name in expected_names)
    if len(expected_names) < 2:
        return 1.0
    if total < requests_needed(shares):
        return None
    observed = [counts.get(name, 0) for name in expected_names]
    expected = [shares[name] * total for name in expected_names]
    return float(chisquare(observed, expected).pvalue)


def split_verdict(counts, expect, *, unit="requests", band=True):
    """Judge how `counts` ({replica: count}) split against the expected shares.

    `band`: also hold each replica within (1 ± tolerance) × its expected count.
    """
    names = sorted(counts)
    shares, failures = expected_shares(names, expect.weights)
    total = sum(counts.values())
    expected_as = "a weighted" if expect.weights is not None else "an even"
    if expect.replicas is not None and len(names) != expect.replicas:
        failures.append(f"expected {expect.replicas} replicas, {len(names)} answered")
    if band:
        for name, share in shares.items():
            count, wanted = counts.get(name, 0), share * total
            low, high = (1 - expect.tolerance) * wanted, (1 + expect.tolerance) * wanted
            if not low <= count <= high:
                failures.append(
                    f"{name} answered {count} {unit}, outside {low:.0f}–{high:.0f} "
                    f"({expected_as} share of {wanted:.1f} ± {expect.tolerance:.0%})"
                )
    # The fit test decides for weights and for clients; an even split of requests keeps
    # its tolerance band, unless a minimum p-value is asked for.
    tested = expect.weights is not None or not band or expect.min_p_value is not None
    p_value = fit(counts, shares) if tested else None
    minimum = expect.min_p_value if expect.min_p_value is not None else MISFIT
    summary = f"{total} {unit} over {len(names)} replicas, expected {weights_text(shares)}"
    cannot_tell = None
    if tested and p_value is None:
        cannot_tell = (
            f"cannot tell yet whether the {unit} split as expected: need ≥ "
            f"{requests_needed(shares)} {unit} (≥ {MIN_EXPECTED} expected for each replica), "
            f"got {total}"
        )
    elif p_value is not None:
        summary += f"; chi-square p = {p_value:.3g}"
        if p_value < minimum:
            got = ", ".join(f"{name} {counts.get(name, 0) / total:.1%}" for name in shares)
            failures.append(
                f"the {unit} do not fit {expected_as} split ({weights_text(shares)}): "
                f"got {got} (p = {p_value:.3g} < {minimum})"
            )
    return Verdict("distribution", summary, tuple(failures), cannot_tell)


def distribution_verdict(result, expect, counts=None, unit="requests"):
    """The split over the replicas, and the errors, against the expectations.

    `counts`: what to split, when not the requests (the clients, each by its replica: the
    fit test alone judges them, as a few dozen clients are too few for a tolerance band).
    """
    if not result.replicas:
        return Verdict(
            "distribution",
            "nothing answered",
            (f"no request was answered ({result.failed} failed)",),
        )
    by_requests = counts is None
    verdict = split_verdict(
        result.counts if by_requests else counts, expect, unit=unit, band=by_requests
    )
    if result.failed > expect.max_errors:
        reason = f"{result.failed} requests failed, more than the {expect.max_errors} allowed"
        verdict = Verdict(
            verdict.check, verdict.summary, (*verdict.failures, reason), verdict.cannot_tell
        )
    return verdict


def unmet_expectations(result, expect):
    """Return why the run fails the expectations, one sentence each; empty when it passes.

    A sample too small to judge the weights is a reason too ("cannot tell yet: ...").
    """
    verdict = distribution_verdict(result, expect)
    return [*verdict.failures, *([verdict.cannot_tell] if verdict.cannot_tell else [])]
