"""Show a BalanceResult: a table with bars for people, JSON and JUnit XML for machines."""

import xml.etree.ElementTree as ET
from dataclasses import asdict

from rich import box
from rich.bar import Bar
from rich.table import Table
from rich.text import Text

from balance_check.checks import client_paths, connection_replicas, windows_of

# One character per window, by the replica's share of it (scaled to the busiest share).
LEVELS = "▁▂▃▄▅▆▇█"


def latency_cells(latency):
    """The latency percentiles in milliseconds, as table cells."""
    if latency is None:
        return ["-"] * 4
    return [f"{value * 1000:.1f}" for value in (latency.p50, latency.p95, latency.p99, latency.max)]


def replica_table(result):
    """One row per replica with its count, share, a bar and its latency; then all of them."""
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
        caption="latency in milliseconds",
        caption_justify="right",
    )
    table.add_column("replica", no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("errors", justify="right", no_wrap=True)
    # The bar takes whatever width the other columns leave.
    table.add_column("", ratio=1, min_width=6)
    for percentile in ("p50", "p95", "p99", "max"):
        table.add_column(percentile, justify="right", no_wrap=True)
    busiest = max((replica.count for replica in result.replicas), default=0)
    for replica in result.replicas:
        # Bars are scaled to the busiest replica: equal bars mean an even split.
        bar = Bar(size=busiest, begin=0, end=replica.count, color="green")
        table.add_row(
            replica.name,
            str(replica.count),
            f"{replica.share:.1%}",
            f"[bold red]{replica.errors}[/]" if replica.errors else "0",
            bar,
            *latency_cells(replica.latency),
        )
    table.add_section()
    table.add_row(
        "all",
        str(result.answered),
        "100.0%" if result.answered else "-",
        str(result.failed - result.unattributed),
        "",
        *latency_cells(result.latency),
    )
    return table


def fairness_line(result):
    fairness = result.fairness
    if fairness is None:
        return "Fairness: nothing was answered"
    spread_share = fairness.spread / fairness.even_share
    return (
        f"Fairness: the busiest replica answered {fairness.busiest}, the idlest {fairness.idlest}: "
        f"a spread of {fairness.spread} ({spread_share:.0%} of an even share); "
        f"chi-square test: {fairness.in_words()}."
    )


def errors_line(result):
    if not result.errors:
        return "Errors: none."
    kinds = ", ".join(f"{count} × {kind}" for kind, count in result.errors.items())
    # Who gave them: a sick replica stands out, whichever balancer is in front.
    sources = [f"{replica.name} {replica.errors}" for replica in result.replicas if replica.errors]
    if result.unattributed:
        sources.append(f"no replica named {result.unattributed}")
    return (
        f"Errors: {result.failed} of {result.requests} requests failed: {kinds}; "
        f"from {', '.join(sources)}."
    )


def clients_table(result):
    """One row per client: the replicas it saw, and where it first moved."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for column in ("client", "answers", "replicas", "moved"):
        table.add_column(column, no_wrap=column != "replicas")
    for path in client_paths(result.samples):
        moved = "-"
        if path.moved:
            number, at, before, after = path.moved
            moved = f"[bold red]{before} → {after} at request {number} ({at:.2f} s)[/]"
        table.add_row(
            str(path.client), str(len(path.replicas)), ", ".join(sorted(set(path.replicas))), moved
        )
    return table


def connections_table(result):
    """One row per HTTP/2 connection: how many requests it carried, to which replicas."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for column in ("connection", "requests", "replicas"):
        table.add_column(column)
    for connection, replicas in sorted(connection_replicas(result.samples).items()):
        counted = ", ".join(f"{name} {replicas.count(name)}" for name in sorted(set(replicas)))
        table.add_row(connection, str(len(replicas)), counted)
    return table


def drift_table(result, expect, width):
    """Each replica's share per window, as one character per window; red when out of range."""
    windows = windows_of(result, expect, width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    table.add_column("replica", no_wrap=True)
    table.add_column(
        f"share per {width:g} s, 0–{windows[-1].end:g} s (red: out of range)", no_wrap=True
    )
    shares = [
        window.counts.get(name, 0) / window.total
        for window in windows
        if window.total
        for name in result.counts
    ]
    top = max(shares, default=0) or 1
    for name in sorted(result.counts):
        line = Text()
        for window in windows:
            share = window.counts.get(name, 0) / window.total if window.total else 0
            level = LEVELS[min(len(LEVELS) - 1, int(share / top * len(LEVELS)))]
            if not window.total or not share:
                level = " "
            style = "bold red" if name in window.out_of_range else "green"
            line.append(level if level != " " else "·", style=style)
        table.add_row(name, line)
    return table


def render(result, verdicts, console, expect=None, window=None):
    """Print the result as a person wants to read it: the split, then each check's picture."""
    rate = result.requests / result.seconds if result.seconds else 0
    console.print(
        f"[bold]{result.url}[/]: {result.requests} requests from {result.concurrency} clients "
        f"in {result.seconds:.2f} s ({rate:.0f}/s); replica named by {result.named_by}",
        highlight=False,
    )
    console.print(replica_table(result))
    if expect is None or expect.weights is None:
        # Against weights, the distribution line below gives the fit; an even split is moot.
        console.print(fairness_line(result), highlight=False)
    console.print(errors_line(result), highlight=False)
    pictures = {
        "stickiness": lambda: clients_table(result),
        "connections": lambda: connections_table(result),
        "drift": lambda: drift_table(result, expect, window),
    }
    for verdict in verdicts:
        if verdict.check in pictures and result.samples:
            console.print(pictures[verdict.check]())
        console.print(f"[bold]{verdict.check}[/]: {verdict.summary}", highlight=False)
    for verdict in verdicts:
        for reason in verdict.failures:
            console.print(f"[bold red]FAIL[/]: {reason}", highlight=False)
        if verdict.cannot_tell:
            console.print(f"[bold yellow]CANNOT TELL[/]: {verdict.cannot_tell}", highlight=False)
    if all(verdict.passed for verdict in verdicts):
        console.print("[bold green]PASS[/]: every expectation holds", highlight=False)


def as_json(result, verdicts, expect=None, window=None):
    """The result as plain data, for --json."""
    fairness = result.fairness
    unmet = [reason for verdict in verdicts for reason in verdict.failures]
    document = {
        "ok": all(verdict.passed for verdict in verdicts),
        "unmet": unmet,
        "cannot_tell": [verdict.cannot_tell for verdict in verdicts if verdict.cannot_tell],
        "checks": [{**asdict(verdict), "passed": verdict.passed} for verdict in verdicts],
        "url": result.url,
        "named_by": result.named_by,
        "concurrency": result.concurrency,
        "seconds": round(result.seconds, 3),
        "requests": result.requests,
        "answered": result.answered,
        "failed": result.failed,
        "replicas": [asdict(replica) for replica in result.replicas],
        "latency_seconds": asdict(result.latency) if result.latency else None,
        "errors": result.errors,
        "fairness": {**asdict(fairness), "spread": fairness.spread, "in_words": fairness.in_words()}
        if fairness
        else None,
    }
    checked = {verdict.check for verdict in verdicts}
    if "stickiness" in checked:
        document["clients"] = [asdict(path) for path in client_paths(result.samples)]
    if "connections" in checked:
        document["connections"] = connection_replicas(result.samples)
    if "drift" in checked:
        document["windows"] = [asdict(window) for window in windows_of(result, expect, window)]
    return document


def junit_xml(result, verdicts):
    """The verdicts as a JUnit XML document: one test case per check, as CI systems show."""
    failed = sum(bool(verdict.failures) for verdict in verdicts)
    skipped = sum(bool(verdict.cannot_tell) and not verdict.failures for verdict in verdicts)
    suite = ET.Element(
        "testsuite",
        name="balance-check",
        tests=str(len(verdicts)),
        failures=str(failed),
        errors="0",
        skipped=str(skipped),
        time=f"{result.seconds:.3f}",
    )
    for verdict in verdicts:
        case = ET.SubElement(
            suite, "testcase", classname=f"balance-check {result.url}", name=verdict.check
        )
        if verdict.failures:
            failure = ET.SubElement(case, "failure", message=verdict.failures[0], type="unmet")
            failure.text = "\n".join(verdict.failures)
        elif verdict.cannot_tell:
            ET.SubElement(case, "skipped", message=verdict.cannot_tell)
        ET.SubElement(case, "system-out").text = verdict.summary
    return ET.ElementTree(suite)


def write_junit(result, verdicts, path):
    """Write junit_xml to `path`."""
    tree = junit_xml(result, verdicts)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
