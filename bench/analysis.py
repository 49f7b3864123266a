"""From measured points to the report: medians, ratios, the issue's goals, table and chart.

Ratios are taken per repeat, between measurements seconds apart, then summarised as a
median with min–max: on a shared machine absolute numbers drift, ratios much less.
"""

import statistics

METRICS = ("rps", "p50_ms", "p95_ms", "p99_ms", "cpu_s_per_1k")


def spread(values):
    values = [value for value in values if value is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(points, setups, concurrency):
    """Medians (and min–max) over repeats for every setup and concurrency."""
    summary = {}
    for setup in setups:
        for connections in concurrency:
            runs = [p for p in points if p["setup"] == setup.name and p["c"] == connections]
            summary[setup.name, connections] = {
                key: spread([run[key] for run in runs]) for key in METRICS
            } | {"errors": sum(run["errors"] for run in runs)}
    return summary


def ratio(points, headline, top, bottom, key):
    """top ÷ bottom for `key` in every repeat at the headline concurrency, summarised."""
    by_repeat = {}
    for point in points:
        if point["c"] == headline:
            by_repeat.setdefault(point["repeat"], {})[point["setup"]] = point
    return spread(
        [
            runs[top][key] / runs[bottom][key]
            for runs in by_repeat.values()
            if top in runs and bottom in runs and runs[bottom][key]
        ]
    )


def median_at(summary, name, headline, key):
    stat = summary.get((name, headline), {}).get(key)
    return stat["median"] if stat else None


def best_peers(setups, summary, headline):
    """The peer with the most requests/s and the one with the lowest p99, at the headline."""
    peers = [s.name for s in setups if s.peer and median_at(summary, s.name, headline, "rps")]
    if not peers:
        return None, None
    fastest = max(peers, key=lambda name: median_at(summary, name, headline, "rps"))
    quickest = min(peers, key=lambda name: median_at(summary, name, headline, "p99_ms"))
    return fastest, quickest


def ratios(points, setups, summary, headline):
    """The ratios the report quotes: the stack against each peer and its floors."""
    names = {setup.name for setup in setups}
    labels = {setup.name: setup.label for setup in setups}
    wanted = []
    for setup in setups:
        if setup.peer:
            wanted += [("stack", setup.name, "rps"), ("stack", setup.name, "p99_ms")]
    fastest, quickest = best_peers(setups, summary, headline)
    wanted += [
        ("stack", "flask-floor", "rps"),
        ("stack", "flask-floor", "cpu_s_per_1k"),
        ("flask-floor", fastest, "rps"),
        ("flask-floor", quickest, "p99_ms"),
        ("server-floor", fastest, "rps"),
        ("server-floor", quickest, "p99_ms"),
        ("flask-floor", "server-floor", "rps"),
        ("stack", "single", "rps"),
        ("stack", "ceiling", "rps"),
        ("server-floor", "ceiling", "rps"),
    ]
    found = []
    for top, bottom, key in wanted:
        if top in names and bottom in names and top != bottom:
            stat = ratio(points, headline, top, bottom, key)
            if stat:
                what = {"rps": "requests/s", "p99_ms": "p99", "cpu_s_per_1k": "CPU per request"}
                name = f"{labels[top]} ÷ {labels[bottom]}, {what[key]}"
                found.append({"name": name, "top": top, "bottom": bottom, "key": key} | stat)
    return found


def find(found, top, bottom, key):
    return next((r for r in found if (r["top"], r["bottom"], r["key"]) == (top, bottom, key)), None)


def times(stat):
    return f"{stat['median']:.2f}× ({stat['min']:.2f}–{stat['max']:.2f})" if stat else "–"


def goals(setups, summary, found, rss, headline):
    """The issue's goals: (goal, measured, met, why) rows; `why` holds the floors' figures.

    A floor that misses a goal too shows that no app (server floor) or no Flask app
    (Flask floor) on this server could meet it on this machine.
    """
    labels = {setup.name: setup.label for setup in setups}
    rows = []
    fastest, quickest = best_peers(setups, summary, headline)
    for best, key, goal, test in (
        (fastest, "rps", "≥ 1.5× the best peer's requests/s", lambda v: v >= 1.5),
        (quickest, "p99_ms", "p99 ≤ 0.75× the best peer's", lambda v: v <= 0.75),
    ):
        stat = find(found, "stack", best, key)
        if stat:
            floors = [
                f"{labels[floor]}: {times(find(found, floor, best, key))}"
                for floor in ("flask-floor", "server-floor")
                if find(found, floor, best, key)
            ]
            why = f"best peer: {labels[best]}; " + "; ".join(floors)
            rows.append((goal, times(stat), test(stat["median"]), why))
    stat = find(found, "stack", "flask-floor", "rps")
    if stat:
        cpu = find(found, "stack", "flask-floor", "cpu_s_per_1k")
        why = f"CPU per request, stack ÷ Flask floor: {times(cpu)}; profile below"
        rows.append(
            ("stack ÷ Flask floor ≥ 0.9 (instrumentation)", times(stat), stat["median"] >= 0.9, why)
        )

    flask_peers = [s.name for s in setups if s.flask and s.peer]
    cpu = {name: median_at(summary, name, headline, "cpu_s_per_1k") for name in flask_peers}
    cpu = {name: value for name, value in cpu.items() if value is not None}
    stack_cpu = median_at(summary, "stack", headline, "cpu_s_per_1k")
    if stack_cpu is not None and cpu:
        lowest = min(cpu, key=cpu.get)
        why = f"lowest peer: {labels[lowest]} {cpu[lowest]:.3f}" + floor_text(
            summary, headline, labels
        )
        rows.append(
            (
                "lowest CPU per request of the Flask setups (ms)",
                f"{stack_cpu:.3f}",
                stack_cpu <= cpu[lowest],
                why,
            )
        )
    memory = {name: max(rss[name]) for name in flask_peers if rss.get(name)}
    if rss.get("stack") and memory:
        lowest = min(memory, key=memory.get)
        biggest = max(rss["stack"])
        why = f"lowest peer: {labels[lowest]} {memory[lowest]:.1f} MiB"
        if rss.get("flask-floor"):
            why += f"; Flask floor {max(rss['flask-floor']):.1f} MiB"
        rows.append(
            (
                "lowest memory per replica of the Flask setups",
                f"{biggest:.1f} MiB",
                biggest <= memory[lowest],
                why,
            )
        )
        rows.append(("< 64 MiB per replica", f"{biggest:.1f} MiB", biggest < 64, "–"))
    errors = {
        s.name: sum(summary[s.name, c]["errors"] for (n, c) in summary if n == s.name)
        for s in setups
    }
    failing = [f"{labels[name]} {count}" for name, count in errors.items() if count]
    rows.append(
        (
            "zero errors everywhere",
            str(sum(errors.values())),
            not failing,
            ", ".join(failing) or "–",
        )
    )
    return rows


def floor_text(summary, headline, labels):
    value = median_at(summary, "flask-floor", headline, "cpu_s_per_1k")
    return f"; Flask floor {value:.3f}" if value is not None else ""
