"""The report as people read it: a Markdown document, a chart, and a closing note."""

from rich.console import Console
from rich.table import Table

console = Console()


def fmt(stat, digits=0, with_spread=False):
    if stat is None:
        return "–"
    text = f"{stat['median']:,.{digits}f}"
    if with_spread:
        text += f" ({stat['min']:,.{digits}f}–{stat['max']:,.{digits}f})"
    return text


def seconds(value):
    return "–" if value is None else f"{value:.1f}"


def setup_table(report):
    lines = ["| setup | what it is, where it comes from |", "|---|---|"]
    for row in report["setups"]:
        lines.append(f"| {row['label']} | {row['source']} (`{row['folder']}`) |")
    return lines


def load_table(report):
    lines = [
        "| setup | connections | requests/s | p50 ms | p95 ms | p99 ms | errors | CPU ms / req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['label']} | {row['c']} | {fmt(row['rps'], 0, True)} "
            f"| {fmt(row['p50_ms'], 1)} | {fmt(row['p95_ms'], 1)} | {fmt(row['p99_ms'], 1)} "
            f"| {row['errors']} | {fmt(row['cpu_s_per_1k'], 3)} |"
        )
    return lines


def resource_table(report):
    lines = [
        "| setup | image(s), MiB | up → ready, s | replicas answering | resident MiB per "
        "replica, max (Σ RSS) | `--scale` → new replica answers, s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in report["setups"]:
        images = ", ".join(f"`{tag}` {size:.0f}" for tag, size in row["images"].items())
        rss, process_rss = row["rss_mib"], row["process_rss_mib"]
        rss_text = f"{max(rss):.1f} ({max(process_rss):.1f})" if rss else "–"
        answering = "{}/{}".format(*row["replicas"]) if row.get("replicas") else "–"
        scale = row.get("scale_seconds", "not measured")
        if scale is None:
            scale = f"never within {report['plan']['scale_limit']} s"
        elif isinstance(scale, float):
            scale = f"{scale:.1f}"
        lines.append(
            f"| {row['label']} | {images} | {seconds(row['up_seconds'])} | {answering} "
            f"| {rss_text} | {scale} |"
        )
    return lines


def profile_table(report):
    profiles = {row["label"]: row["profile"] for row in report["setups"] if row.get("profile")}
    if not profiles:
        return []
    groups = sorted({group for p in profiles.values() for group in p["shares"]})
    lines = [
        "Where a replica's CPU goes under load (py-spy on one replica's worker, share of its "
        "busy samples; standard-library time is charged to its caller):",
        "",
        "| | "
        + " | ".join(f"{label} ({p['samples']} samples)" for label, p in profiles.items())
        + " |",
        "|---|" + "---:|" * len(profiles),
    ]
    for group in groups:
        shares = (f"{100 * p['shares'].get(group, 0):.0f} %" for p in profiles.values())
        lines.append(f"| {group} | " + " | ".join(shares) + " |")
    return lines + [""]


def limit_section(report):
    """The limit for this job here, every setup against it, and the stack's breakdown."""
    limit = report.get("limit")
    if not limit:
        return []
    flask = limit["flask"]
    lines = [
        "## The limit, measured",
        "",
        f"Flask's own cost: the app's WSGI callable called in-process in the app image "
        f"(Python {flask['python']}, gc thresholds {tuple(flask['gc_threshold'])}), a "
        f"prepared `/info` environ with nginx's headers, instrumentation on, "
        f"{flask['calls']:,} calls per variant, median of 5 batches of "
        "`time.process_time()` ([bench/flask_cost.py](../flask_cost.py)):",
        "",
        "| variant | CPU ms per call |",
        "|---|---:|",
    ]
    for name, ms in flask["ms_per_call"].items():
        lines.append(f"| {name} | {ms:.4f} |")
    lines.append("")
    if limit.get("limit_ms") is None:
        return lines + ["No nginx proxy floor in this run: no limit to compare with.", ""]
    lines += [
        f"nginx's proxying cost: the stack's nginx in front of an nginx answering `/info` "
        f"itself (`bench/setups/proxy-floor`), the front container's CPU per request "
        f"without its idle share: **{limit['nginx_ms']:.4f} ms**.",
        "",
        f"**The limit = {limit['flask_ms']:.4f} + {limit['nginx_ms']:.4f} = "
        f"{limit['limit_ms']:.4f} ms of CPU per request**: what no server layer can avoid.",
        "",
        f"| setup | CPU ms per request at {report['plan']['headline']} connections | ÷ the limit |",
        "|---|---:|---:|",
    ]
    for row in limit["per_setup"]:
        lines.append(
            f"| {row['label']} | {fmt(row['cpu_ms'], 3, True)} | {fmt(row['x_limit'], 2, True)} |"
        )
    found = limit.get("breakdown")
    if found:
        lines += [
            "",
            f"Where the stack's CPU per request goes ({found['requests']:,} requests at "
            f"{report['plan']['headline']} connections, all repeats pooled; the rows add up "
            "to the total):",
            "",
            "| | ms per request | share |",
            "|---|---:|---:|",
        ]
        for name, ms in found["rows"]:
            lines.append(f"| {name} | {ms:.4f} | {100 * ms / found['total_ms']:.0f} % |")
        lines.append(f"| **the stack's containers, total** | **{found['total_ms']:.4f}** | 100 % |")
        lines += ["", "Outside the containers, per request (not in the stack's figure):", ""]
        lines += [f"- {name}: {ms:.4f} ms" for name, ms in found["outside"]]
        lines += [
            "",
            "| service | context switches per request | throttled ms per request |",
            "|---|---:|---:|",
        ]
        for service, values in sorted(found["per_service"].items()):
            lines.append(
                f"| {service} | {values['context_switches']:.2f} | {values['throttled_ms']:.4f} |"
            )
    return lines + [""]


def steal_text(stat):
    """The hypervisor's share of the CPU during the points: a slower machine, not the stack."""
    if not stat:
        return ""
    return (
        f" The hypervisor took {stat['median']:.0%} of the CPU time during the points "
        f"(steal, {stat['min']:.0%}–{stat['max']:.0%}): absolute figures sink with it, "
        "ratios between setups much less."
    )


def markdown(report):
    """The results as a Markdown document: setups, load, resources, ratios, goals, profile."""
    plan, host = report["plan"], report["machine"]
    lines = [
        f"# Benchmark, {report['finished']}",
        "",
        f"Command: `{plan['command']}`. Machine: {host['cpus']} × {host['cpu_model']}, "
        f"{host['memory_gib']} GiB, Linux {host['kernel']}, Docker {host['docker']}, "
        f"{host['compose']}, {host['load_generator']}, 1-minute load average "
        f"{host['load_average']} at the end. {plan['repeats']} repeat(s) of {plan['duration']} s "
        "per point, interleaved, only the measured setup running; medians, with min–max "
        "over repeats for requests/s." + steal_text(report.get("steal")),
        "",
        *setup_table(report),
        "",
        *load_table(report),
        "",
        *resource_table(report),
        "",
        "Resident memory counts each page of a replica once (cgroup anonymous + mapped "
        "files); Σ RSS adds up its processes' RSS, counting what they share twice. CPU per "
        "request counts every container of the setup (nginx too). Up → ready: from `up` "
        "(images built) until every container is running, healthy where it has a "
        "healthcheck, and `/info` answers. Replicas answering: distinct replicas that "
        "answered `/info` through the front, of those the engine reports.",
        "",
        f"Ratios at {plan['headline']} connections, median (min–max) over repeats:",
        "",
    ]
    for stat in report["ratios"]:
        lines.append(
            f"- {stat['name']}: **{stat['median']:.2f}** ({stat['min']:.2f}–{stat['max']:.2f})"
        )
    lines += [
        "",
        "Goals (issues 16 and 21). Where the stack misses one, the last column shows whether the "
        "floors meet it: a goal the Flask floor misses too is out of reach for any Flask app "
        "on this server here, one the server floor misses for any app at all.",
        "",
        "| goal | measured | met | why: best peer, floors |",
        "|---|---:|:---:|---|",
    ]
    for goal, measured, met, why in report["goals"]:
        lines.append(f"| {goal} | {measured} | {'yes' if met else '**no**'} | {why} |")
    lines += ["", *limit_section(report), *profile_table(report)]
    return "\n".join(lines).rstrip() + "\n"


def limit_text(report):
    """The stack's CPU per request against the limit, in one sentence (or nothing)."""
    limit = report.get("limit") or {}
    stack = next((row for row in limit.get("per_setup", []) if row["label"] == "this stack"), None)
    if not limit.get("limit_ms") or not stack or not stack["x_limit"]:
        return ""
    x = stack["x_limit"]
    return (
        f"CPU per request: {x['median']:.2f}× ({x['min']:.2f}–{x['max']:.2f}) the limit of "
        f"{limit['limit_ms']:.3f} ms (this app in-process {limit['flask_ms']:.3f} + nginx "
        f"proxying {limit['nginx_ms']:.3f}). "
    )


def readme_summary(report):
    """The few lines the README shows: the stack against each peer, and the goals met."""
    plan = report["plan"]
    labels = {row["name"]: row for row in report["setups"]}
    peers = [row["name"] for row in report["setups"] if row.get("peer")]
    lines = [
        f"Run of {report['finished']} ({plan['repeats']} × {plan['duration']} s at "
        f"{plan['headline']} connections), median (min–max) over interleaved repeats:",
        "",
        "| this stack ÷ … | requests/s | p99 latency |",
        "|---|---:|---:|",
    ]
    for name in peers:
        by_key = {
            r["key"]: r for r in report["ratios"] if (r["top"], r["bottom"]) == ("stack", name)
        }
        if by_key:
            row = labels[name]
            cells = (
                f"{by_key[k]['median']:.2f}× ({by_key[k]['min']:.2f}–{by_key[k]['max']:.2f})"
                if k in by_key
                else "–"
                for k in ("rps", "p99_ms")
            )
            lines.append(f"| [{row['label']}]({row['folder']}) | " + " | ".join(cells) + " |")
    met = [goal for goal, _, ok, _ in report["goals"] if ok]
    missed = [goal for goal, _, ok, _ in report["goals"] if not ok]
    lines += ["", limit_text(report) + f"Goals met: {len(met)} of {len(report['goals'])}."]
    if missed:
        lines[-1] += " Missed: " + "; ".join(missed) + " (why: the goals table in latest.md)."
    return "\n".join(lines) + "\n"


def chart(report, path):
    """Throughput and p99 latency against concurrency, one line per setup (min–max bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(report["plan"]["concurrency"]) == 1:
        return bar_chart(report, path, plt)
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(12, 4.8))
    for label in dict.fromkeys(row["label"] for row in report["summary"]):
        rows = [row for row in report["summary"] if row["label"] == label]
        levels = [row["c"] for row in rows]
        rps = [row["rps"] for row in rows]
        throughput.errorbar(
            levels,
            [s["median"] for s in rps],
            yerr=[[s["median"] - s["min"] for s in rps], [s["max"] - s["median"] for s in rps]],
            marker="o",
            capsize=3,
            label=label,
        )
        latency.plot(levels, [row["p99_ms"]["median"] for row in rows], marker="o", label=label)
    # Logarithmic: the ceiling is ten times the rest, which a linear axis would flatten.
    throughput.set(
        title="Throughput", xlabel="concurrent connections", ylabel="requests/s", yscale="log"
    )
    latency.set(title="p99 latency", xlabel="concurrent connections", ylabel="ms", yscale="log")
    for axes in (throughput, latency):
        axes.set_xticks(report["plan"]["concurrency"])
        axes.grid(alpha=0.3)
    # One legend under both plots, where it hides no line; peers are named by source.
    handles, labels = latency.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), frameon=False)
    host = report["machine"]
    figure.suptitle(
        f"{report['plan']['command']} — {host['cpus']} CPUs, Docker {host['docker']}, "
        f"{report['finished']}",
        fontsize=9,
    )
    rows_of_legend = -(-len(labels) // 5)
    figure.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def bar_chart(report, path, plt):
    """One concurrency: a bar per setup for requests/s (min–max) and for p99, CPU per request."""
    rows = report["summary"]
    labels = [row["label"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(15, 0.42 * len(rows) + 1.6), sharey=True)
    for ax, key, title in (
        (axes[0], "rps", "requests/s (log)"),
        (axes[1], "p99_ms", "p99 ms"),
        (axes[2], "cpu_s_per_1k", "CPU ms per request"),
    ):
        stats = [row[key] or {"median": 0, "min": 0, "max": 0} for row in rows]
        medians = [stat["median"] for stat in stats]
        spread = [[m - stat["min"] for m, stat in zip(medians, stats, strict=True)],
                  [stat["max"] - m for m, stat in zip(medians, stats, strict=True)]]  # fmt: skip
        colours = ["tab:red" if label == "this stack" else "tab:blue" for label in labels]
        ax.barh(labels, medians, xerr=spread, color=colours, capsize=3)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_xscale("log")  # the ceiling is ten times the rest
    axes[0].invert_yaxis()
    host = report["machine"]
    figure.suptitle(
        f"{report['plan']['headline']} connections, median and min–max over "
        f"{report['plan']['repeats']} repeats — {host['cpus']} CPUs, Docker {host['docker']}, "
        f"{report['finished']}",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def closing_note(report, output):
    table = Table(title=f"at {report['plan']['headline']} connections")
    for column in ("setup", "requests/s", "p99 ms", "errors", "CPU ms/req"):
        table.add_column(column)
    for row in report["summary"]:
        if row["c"] == report["plan"]["headline"]:
            table.add_row(
                row["label"],
                fmt(row["rps"], 0, True),
                fmt(row["p99_ms"], 1),
                str(row["errors"]),
                fmt(row["cpu_s_per_1k"], 3),
            )
    console.print(table)
    for stat in report["ratios"]:
        console.print(
            f"{stat['name']}: [bold]{stat['median']:.2f}[/] "
            f"(min–max {stat['min']:.2f}–{stat['max']:.2f})"
        )
    limit = report.get("limit") or {}
    if limit.get("limit_ms"):
        console.print(
            f"limit: {limit['limit_ms']:.4f} ms CPU per request (Flask in-process "
            f"{limit['flask_ms']:.4f} + nginx proxying {limit['nginx_ms']:.4f})"
        )
    if report.get("steal"):
        console.print(steal_text(report["steal"]).strip())
    for goal, measured, met, why in report["goals"]:
        verdict = "[green]met" if met else "[red]not met"
        console.print(f"goal {goal}: {measured} {verdict}[/] ({why})")
    console.print(
        f"wrote {output / 'latest.md'}, {output / 'latest.png'}, {output / 'latest.json'}"
    )
