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
            } | {
                "errors": sum(run["errors"] for run in runs),
                "restarts": sum(len(run.get("restarted", [])) for run in runs),
            }
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
            # None: no CPU figure for a point in which a container restarted.
            if top in runs and bottom in runs and runs[top][key] is not None and runs[bottom][key]
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
    # Levers and other servers for the same app (granian): each against the stack.
    fixed = {"stack", "flask-floor", "single"}
    for setup in setups:
        if setup.flask and not setup.peer and setup.name not in fixed:
            wanted += [(setup.name, "stack", key) for key in ("rps", "p99_ms", "cpu_s_per_1k")]
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


def goals(setups, summary, found, rss, headline, limit=None):
    """The issue's goals: (goal, measured, met, why) rows; `why` holds the floors' figures.

    A floor that misses a goal too shows that no app (server floor) or no Flask app
    (Flask floor) on this server could meet it on this machine.
    """
    labels = {setup.name: setup.label for setup in setups}
    rows = []
    fastest, quickest = best_peers(setups, summary, headline)
    if limit and limit.get("limit_ms") and "stack" in labels:
        stat = next(row["x_limit"] for row in limit["per_setup"] if row["label"] == labels["stack"])
        if stat:
            why = (
                f"limit {limit['limit_ms']:.3f} ms = Flask in-process {limit['flask_ms']:.3f} "
                f"+ nginx proxying {limit['nginx_ms']:.3f}; breakdown below"
            )
            rows.append(("CPU per request ≤ 2× the limit", times(stat), stat["median"] <= 2, why))
    for best, key, goal, test in (
        (fastest, "rps", "≥ 3× the best peer's requests/s", lambda v: v >= 3),
        (quickest, "p99_ms", "p99 ≤ 0.5× the best peer's", lambda v: v <= 0.5),
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
    stat = find(found, "stack", "single", "rps")
    if stat:
        rows.append(
            (
                "five replicas behind nginx ≥ 1.0× one replica alone",
                times(stat),
                stat["median"] >= 1,
                "–",
            )
        )
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
    if rss.get("stack"):
        biggest = max(rss["stack"])
        why = f"server floor {max(rss['server-floor']):.1f} MiB" if rss.get("server-floor") else "–"
        rows.append(("≤ 48 MiB per replica", f"{biggest:.1f} MiB", biggest <= 48, why))
    errors = {
        s.name: sum(summary[s.name, c]["errors"] for (n, c) in summary if n == s.name)
        for s in setups
    }
    failing = [f"{labels[name]} {count}" for name, count in errors.items() if count]
    restarts = {
        s.name: sum(summary[s.name, c].get("restarts", 0) for (n, c) in summary if n == s.name)
        for s in setups
    }
    failing += [
        f"{labels[name]}: {count} container restart(s) during load"
        for name, count in restarts.items()
        if count
    ]
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


# The replica's worker profile (measure.PROFILE_GROUPS), gathered into the layers the
# breakdown names.
LAYERS = {
    "server layer (gunicorn, gevent)": ("gunicorn", "gevent"),
    "Flask and Werkzeug": ("Flask and Werkzeug",),
    "the app's additions (metrics, access line, ProxyFix, handlers, JSON)": (
        "metrics",
        "access line",
        "ProxyFix",
        "the app's handlers",
        "JSON encoding",
    ),
    "Python itself, the standard library": ("other",),
}


def pooled(points, name, headline):
    """Every counter of a setup's headline points added up, and the requests they served."""
    runs = [p for p in points if p["setup"] == name and p["c"] == headline and p.get("services")]
    services, host = {}, {}
    for run in runs:
        for service, used in run["services"].items():
            mine = services.setdefault(service, {})
            for key, value in used.items():
                mine[key] = mine.get(key, 0) + value
        for key, value in run["host"].items():
            host[key] = host.get(key, 0) + value
    seconds = sum(run["seconds"] for run in runs)
    return services, host, sum(run["requests"] for run in runs), seconds


def idle_share(idle, service, seconds, requests):
    """ms per request the service spends anyway (healthchecks), over `seconds` of load."""
    return 1000 * idle.get(service, 0) * seconds / requests


def front_nginx_ms(points, idle, headline):
    """The proxy floor's front nginx: CPU ms per request, without its idle share."""
    services, _host, requests, seconds = pooled(points, "proxy-floor", headline)
    if not requests or "nginx" not in services:
        return None
    busy = 1000 * services["nginx"]["cpu_s"] / requests
    return busy - idle_share(idle.get("proxy-floor", {}), "nginx", seconds, requests)


def breakdown(points, idle, profile, headline, app_service="app", name="stack"):
    """The stack's CPU per request split into rows that add up to it (pooled over repeats).

    Healthchecks' share is what every container spends with no load (measured before the
    load points), scaled to the load's seconds; the replicas' kernel time is the cgroups'
    own; their user time is split by the worker profile's shares when there is one.
    """
    services, host, requests, seconds = pooled(points, name, headline)
    if not requests:
        return None
    idle = idle.get(name, {})

    def ms(value):
        return 1000 * value / requests

    rows = []
    for service, used in sorted(services.items()):
        busy = ms(used["cpu_s"]) - idle_share(idle, service, seconds, requests)
        if service != app_service:
            rows.append((f"{service} (its container)", busy))
            continue
        # cgroup v1 counts user and kernel time in ticks (cpuacct.stat), the total in
        # nanoseconds: the ticks give the kernel's fraction, the total the amount.
        ticks = used["user_s"] + used["kernel_s"]
        kernel = busy * used["kernel_s"] / ticks if ticks else 0.0
        rows.append(("replicas, kernel (system calls, TCP, in their cgroups)", kernel))
        user = busy - kernel
        shares = (profile or {}).get("shares")
        if not shares:
            rows.append(("replicas, user space (no profile in this run)", user))
            continue
        for layer, groups in LAYERS.items():
            share = sum(v for k, v in shares.items() if any(k.startswith(g) for g in groups))
            rows.append((f"replicas: {layer}", user * share))
    healthchecks = sum(idle_share(idle, service, seconds, requests) for service in services)
    rows.append(("healthchecks and idle timers (CPU with no load, scaled)", healthchecks))
    outside = [
        ("docker-proxy (the published port)", ms(host.get("docker_proxy_s", 0))),
        ("softirq and IRQ, whole machine (wrk's side too)", ms(host.get("interrupts_s", 0))),
        ("wrk itself", ms(host.get("wrk_s", 0))),
    ]
    per_service = {
        service: {
            "context_switches": used["context_switches"] / requests,
            "throttled_ms": ms(used["throttled_s"]),
        }
        for service, used in services.items()
    }
    return {
        "requests": requests,
        "total_ms": sum(value for _, value in rows),
        "rows": rows,
        "outside": outside,
        "per_service": per_service,
    }


def limit(points, setups, summary, idle, flask, profile, headline):
    """The limit for this job here: Flask's in-process cost + nginx's proxying cost."""
    if not flask:
        return None
    flask_ms = flask["ms_per_call"]["this app"]
    nginx_ms = front_nginx_ms(points, idle, headline)
    found = {"flask": flask, "flask_ms": flask_ms, "nginx_ms": nginx_ms}
    if nginx_ms is None:
        return found
    found["limit_ms"] = flask_ms + nginx_ms
    found["per_setup"] = []
    for setup in setups:
        runs = [
            p["cpu_s_per_1k"]
            for p in points
            if p["setup"] == setup.name and p["c"] == headline and p["cpu_s_per_1k"]
        ]
        found["per_setup"].append(
            {
                "label": setup.label,
                "cpu_ms": spread(runs),
                "x_limit": spread([r / found["limit_ms"] for r in runs]),
            }
        )
    found["breakdown"] = breakdown(points, idle, profile, headline)
    return found


def steal(points, cpus):
    """Share of the machine's CPU time the hypervisor took away during the load points."""
    return spread(
        [
            point["host"]["steal_s"] / (point["seconds"] * cpus)
            for point in points
            if point.get("host") and "steal_s" in point["host"]
        ]
    )
