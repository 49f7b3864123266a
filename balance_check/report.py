"""Show a BalanceResult: a table with bars for people, a JSON document for machines."""

from dataclasses import asdict

from rich import box
from rich.bar import Bar
from rich.table import Table


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


def render(result, unmet, console):
    """Print the result as a person wants to read it."""
    rate = result.requests / result.seconds if result.seconds else 0
    console.print(
        f"[bold]{result.url}[/]: {result.requests} requests from {result.concurrency} clients "
        f"in {result.seconds:.2f} s ({rate:.0f}/s); replica named by {result.named_by}",
        highlight=False,
    )
    console.print(replica_table(result))
    console.print(fairness_line(result), highlight=False)
    console.print(errors_line(result), highlight=False)
    for reason in unmet:
        console.print(f"[bold red]FAIL[/]: {reason}", highlight=False)
    if not unmet:
        console.print("[bold green]PASS[/]: every expectation holds", highlight=False)


def as_json(result, unmet):
    """The result as plain data, for --json."""
    fairness = result.fairness
    return {
        "ok": not unmet,
        "unmet": unmet,
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
