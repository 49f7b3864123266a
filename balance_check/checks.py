"""What a balancer is configured to do, judged from the samples: sticky clients, HTTP/2
connections balanced or pinned, shares drifting over time. Each check returns a Verdict."""

import math
from collections import Counter
from dataclasses import dataclass

from balance_check.statistics import (
    MIN_EXPECTED,
    Verdict,
    distribution_verdict,
    expected_shares,
)

# A connection must carry this many requests before it can show it is pinned: with two
# replicas, ten requests on one of them by chance from a balancer that balances requests
# happens about once in 500.
MIN_PER_CONNECTION = 10
# Moves named one by one; the rest are counted.
MOVES_LISTED = 5


@dataclass(frozen=True)
class ClientPath:
    """The replicas one client's answers came from, in order, and where it first moved."""

    client: int
    replicas: tuple[str, ...]
    # (its request number, seconds into the run, from, to) of the first move, or None.
    moved: tuple[int, float, str, str] | None
    session: str | None


def client_paths(samples):
    """One ClientPath per client that got an answer naming a replica, by client number."""
    answered = {}
    for sample in samples:
        answered.setdefault(sample.client, [])
        if sample.replica is not None:
            answered[sample.client].append(sample)
    paths = []
    for client, sent in sorted(answered.items()):
        if not sent:
            continue
        first = sent[0].replica
        move = next(
            (
                (number, sample.at, first, sample.replica)
                for number, sample in enumerate(sent, start=1)
                if sample.replica != first
            ),
            None,
        )
        replicas = tuple(sample.replica for sample in sent)
        paths.append(ClientPath(client, replicas, move, sent[-1].session))
    return paths


def client_counts(paths):
    """Replica -> how many clients it took first: the split of sessions."""
    return dict(Counter(path.replicas[0] for path in paths))


def stickiness_verdict(result, session_cookie=None):
    """Every client must stay on one replica (and get the session cookie, if one is named)."""
    paths = client_paths(result.samples)
    if not paths:
        return Verdict("stickiness", "no client got an answer", ("no client got an answer",))
    moved = [path for path in paths if path.moved]
    failures = [
        f"client {path.client} moved from {path.moved[2]} to {path.moved[3]} at its request "
        f"{path.moved[0]} ({path.moved[1]:.2f} s into the run)"
        for path in moved[:MOVES_LISTED]
    ]
    if len(moved) > MOVES_LISTED:
        failures.append(f"… and {len(moved) - MOVES_LISTED} more clients moved")
    if session_cookie:
        cookieless = [path.client for path in paths if path.session is None]
        if cookieless:
            failures.append(
                f"the balancer set no cookie {session_cookie} for {len(cookieless)} of "
                f"{len(paths)} clients (clients {', '.join(map(str, cookieless[:10]))})"
            )
    fewest = min(len(path.replicas) for path in paths)
    cannot_tell = None
    if fewest < 2 and not moved:
        cannot_tell = (
            "cannot tell yet whether clients stay on one replica: need ≥ 2 answers per client "
            f"(≥ {2 * len(paths)} requests for {len(paths)} clients), some got {fewest}"
        )
    summary = (
        f"{len(paths) - len(moved)} of {len(paths)} clients stayed on one replica "
        f"({fewest}–{max(len(path.replicas) for path in paths)} answers each)"
    )
    return Verdict("stickiness", summary, tuple(failures), cannot_tell)


def sessions_verdict(result, expect):
    """The split of the clients (each by its first replica) against the expected shares."""
    return distribution_verdict(
        result, expect, counts=client_counts(client_paths(result.samples)), unit="clients"
    )


def connection_replicas(samples):
    """HTTP/2 connection (local address:port) -> the replicas of its answers, in order."""
    replicas = {}
    for sample in samples:
        if sample.connection and sample.replica is not None:
            replicas.setdefault(sample.connection, []).append(sample.replica)
    return replicas


def connections_verdict(result):
    """Balances requests (a connection's streams go to several replicas) or pins connections."""
    per_connection = connection_replicas(result.samples)
    judged = {
        connection: set(replicas)
        for connection, replicas in per_connection.items()
        if len(replicas) >= MIN_PER_CONNECTION
    }
    if len(result.replicas) < 2:
        return Verdict(
            "connections",
            "one replica answered",
            cannot_tell="cannot tell requests from connections: only one replica answered",
        )
    if not judged:
        most = max((len(replicas) for replicas in per_connection.values()), default=0)
        return Verdict(
            "connections",
            f"{len(per_connection)} connections",
            cannot_tell=f"cannot tell yet whether connections are pinned: need ≥ "
            f"{MIN_PER_CONNECTION} requests on a connection, the busiest carried {most} "
            "(more -n, fewer -c)",
        )
    pinned = {connection: replicas for connection, replicas in judged.items() if len(replicas) == 1}
    if len(pinned) == len(judged):
        where = ", ".join(sorted(Counter(next(iter(r)) for r in pinned.values()).elements()))
        return Verdict(
            "connections",
            f"pins connections: each of {len(judged)} connections stayed on one replica",
            (
                f"the balancer pins connections, not requests: each of the {len(judged)} "
                f"HTTP/2 connections sent all its requests to one replica ({where})",
            ),
        )
    widths = sorted(len(replicas) for replicas in judged.values())
    return Verdict(
        "connections",
        f"balances requests: {len(judged) - len(pinned)} of {len(judged)} HTTP/2 connections "
        f"spread their requests over {widths[0]}–{widths[-1]} replicas",
    )


@dataclass(frozen=True)
class Window:
    """One slice of the run: replica -> answers, and who was out of their expected range."""

    start: float
    end: float
    counts: dict
    judged: bool
    out_of_range: tuple[str, ...]

    @property
    def total(self):
        return sum(self.counts.values())


def windows_of(result, expect, width):
    """Cut the run into windows of `width` seconds; judge each replica's share in each."""
    names = sorted(result.counts)
    shares, _ = expected_shares(names, expect.weights)
    last = max((sample.at for sample in result.samples), default=0.0)
    counts = [Counter() for _ in range(math.floor(last / width) + 1)]
    for sample in result.samples:
        if sample.replica is not None:
            counts[math.floor(sample.at / width)][sample.replica] += 1
    windows = []
    for number, counted in enumerate(counts):
        total = sum(counted.values())
        expected = [share * total for share in shares.values() if share > 0]
        judged = bool(expected) and min(expected) >= MIN_EXPECTED
        out = tuple(
            name
            for name, share in shares.items()
            if judged and not in_range(counted[name] / total, share, expect.tolerance)
        )
        windows.append(Window(number * width, (number + 1) * width, dict(counted), judged, out))
    return windows


def in_range(share, expected, tolerance):
    return (1 - tolerance) * expected <= share <= (1 + tolerance) * expected


def runs_out_of_range(windows, name):
    """The stretches of consecutive windows in which `name` was out of its range."""
    stretches, current = [], []
    for window in windows:
        if name in window.out_of_range:
            current.append(window)
        elif current and window.judged:
            stretches.append(current)
            current = []
    return stretches + ([current] if current else [])


def drift_verdict(result, expect, width):
    """Flag a replica whose share left its expected range in some window (and came back?)."""
    windows = windows_of(result, expect, width)
    judged = [window for window in windows if window.judged]
    if not judged:
        busiest = max(window.total for window in windows)
        return Verdict(
            "drift",
            f"{len(windows)} windows of {width:g} s",
            cannot_tell=f"cannot tell yet how shares drift: no window of {width:g} s had ≥ "
            f"{MIN_EXPECTED} answers expected for each replica (the busiest had {busiest} "
            "answers): a longer --window",
        )
    shares, _ = expected_shares(sorted(result.counts), expect.weights)
    failures = []
    for name, share in shares.items():
        low, high = (1 - expect.tolerance) * share, (1 + expect.tolerance) * share
        for stretch in runs_out_of_range(windows, name):
            seen = [window.counts.get(name, 0) / window.total for window in stretch]
            direction = "fell below" if max(seen) < low else "rose above"
            returned = stretch[-1] is not windows[-1]
            failures.append(
                f"{name}'s share {direction} its expected {low:.1%}–{high:.1%} "
                f"from {stretch[0].start:g} s to {stretch[-1].end:g} s "
                f"({', '.join(f'{share:.1%}' for share in seen)})"
                + (" and came back" if returned else " and had not come back at the end")
            )
    summary = (
        f"{len(judged)} of {len(windows)} windows of {width:g} s judged; "
        f"{sum(bool(window.out_of_range) for window in judged)} had a replica out of range"
    )
    return Verdict("drift", summary, tuple(failures))


def verdicts(result, expect, *, sticky=False, session_cookie=None, window=None):
    """Every check the run asked for: the split (of clients when sticky), stickiness,
    connections (over HTTP/2) and drift (with a window)."""
    found = [sessions_verdict(result, expect) if sticky else distribution_verdict(result, expect)]
    if sticky:
        found.append(stickiness_verdict(result, session_cookie))
    if any(sample.connection for sample in result.samples):
        found.append(connections_verdict(result))
    if window:
        found.append(drift_verdict(result, expect, window))
    return found
