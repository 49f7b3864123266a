"""Benchmark the stack beside the seed's baseline, nginx's ceiling, one replica and the floor.

`make bench` runs it. Every setup is started under a Compose project of its own on a port
of its own, all are up at once, and the load points are interleaved (repeat → concurrency
→ setup), so that the ratios compare measurements taken seconds apart on a shared machine.
Everything started is removed at the end, also on Ctrl-C or an error.

Settings (environment): BENCH_QUICK=1 (the smoke run `make test` uses), BENCH_CONCURRENCY
(10,50,100), BENCH_DURATION (8 s per point), BENCH_REPEATS (3), BENCH_HEADLINE (50: the
concurrency the ratios and goals are quoted at), BENCH_FIRST_PORT (default: free ports),
BENCH_OUTPUT (bench/results), BENCH_SETUPS (a comma-separated subset of stack, baseline,
ceiling, single, floor). Settings of the stack itself (GUNICORN_WORKER_CLASS=gthread, ...)
pass through, which is how the tuning was measured.
"""

import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import docker
import requests
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
console = Console()

# The stack's per-client limits would turn a load generator's traffic (one client) into
# 429s; raised here only, so the benchmark measures the service and not the limiter.
UNLIMITED = {
    "RATE_LIMIT_PER_SECOND": "1000000",
    "RATE_LIMIT_BURST": "1000000",
    # nginx takes at most 65535 for limit_conn.
    "CONNECTIONS_PER_CLIENT": "60000",
}
# The stack's own image tags, so a user's running stack is never rebuilt under it.
STACK_IMAGE = {"APP_IMAGE": "flask-gateway", "APP_VERSION": "bench"}


@dataclass
class Setup:
    """One thing to measure: a Compose project on a host port of its own."""

    name: str
    label: str
    files: list
    env: dict
    services: tuple = ("app", "nginx")
    project: str = ""
    port: int = 0

    def compose(self, *args, timeout=900):
        files = [arg for file in self.files for arg in ("-f", str(file))]
        command = ["docker-compose", "-p", self.project, *files, *args]
        result = subprocess.run(
            command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        return result

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/info"


def setting(name, default):
    return os.environ.get(name) or default


def dotenv():
    """The base-image settings `make base-images` wrote into .env (KEY=VALUE lines)."""
    path = ROOT / ".env"
    lines = path.read_text().splitlines() if path.exists() else []
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_setups(quick):
    """The five setups (three in quick mode), each with its environment and a fresh project."""
    images = {key: value for key, value in dotenv().items() if key.endswith("_IMAGE")}
    base = {**os.environ, **images}
    stack_file = ROOT / "docker-compose.yml"
    setups = [
        Setup("stack", "this stack", [stack_file], {**base, **STACK_IMAGE, **UNLIMITED}),
        Setup("baseline", "seed baseline", [BENCH / "baseline/docker-compose.yml"], base),
        Setup(
            "ceiling",
            "nginx ceiling",
            [BENCH / "ceiling/docker-compose.yml"],
            base,
            services=("nginx",),
        ),
        Setup(
            "single",
            "one replica alone",
            [stack_file, BENCH / "single.yml"],
            {**base, **STACK_IMAGE, "APP_REPLICAS": "1"},
            services=("app",),
        ),
        # The stack with a bare WSGI callable in place of the Flask app: what no app on
        # this server (gunicorn, its config, nginx, Docker) can beat on this machine.
        Setup(
            "floor",
            "server floor",
            [stack_file, BENCH / "floor.yml"],
            {**base, **STACK_IMAGE, **UNLIMITED},
        ),
    ]
    chosen = os.environ.get("BENCH_SETUPS", "stack,baseline,floor" if quick else "")
    if chosen:
        setups = [setup for setup in setups if setup.name in chosen.split(",")]
    first_port = os.environ.get("BENCH_FIRST_PORT")
    run_id = uuid.uuid4().hex[:6]
    for number, setup in enumerate(setups):
        setup.project = f"bench{setup.name}{run_id}"
        setup.port = int(first_port) + number if first_port else free_port()
        # Each compose file names its published port differently; set both.
        setup.env = {**setup.env, "GATEWAY_PORT": str(setup.port), "BENCH_PORT": str(setup.port)}
    return setups


def containers(client, setup, service=None):
    labels = [f"com.docker.compose.project={setup.project}"]
    if service:
        labels.append(f"com.docker.compose.service={service}")
    return client.containers.list(all=True, filters={"label": labels})


def all_healthy(client, setup):
    found = containers(client, setup)
    for container in found:
        state = container.attrs["State"]
        health = state.get("Health", {}).get("Status", "healthy")
        if state["Status"] != "running" or health != "healthy":
            return False
    return bool(found)


def answers(url, close=False):
    """True when `url` answers 200 (a new connection each time when `close`)."""
    headers = {"Connection": "close"} if close else {}
    try:
        return requests.get(url, timeout=2, headers=headers).status_code == 200
    except requests.RequestException:
        return False


def start(client, setup, timeout=120):
    """Start a setup; seconds from `up` until all is healthy and /info answers (None: never)."""
    began = time.monotonic()
    # One service at a time, app first: the baseline's nginx resolves `app` once, at start,
    # and Compose v1 would abort the stack's nginx if a replica's healthcheck timed out
    # once on a loaded machine. The wait for health below is this script's own.
    for service in setup.services:
        setup.compose("up", "-d", "--no-deps", service)
    while not (all_healthy(client, setup) and answers(setup.url)):
        if time.monotonic() - began > timeout:
            if answers(setup.url):
                console.log(
                    f"[yellow]{setup.label}: answers, but not all healthy after {timeout} s"
                )
                return None
            logs = setup.compose("logs", "--tail=20").stdout
            raise RuntimeError(f"{setup.label}: not answering after {timeout} s\n{logs}")
        time.sleep(0.2)
    return time.monotonic() - began


def cpu_seconds(client, setup):
    """CPU time used so far by every container of the setup (the cgroups' own counters)."""

    def used(container):
        stats = container.stats(stream=False, one_shot=True)
        return stats["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9

    with ThreadPoolExecutor() as pool:
        return sum(pool.map(used, containers(client, setup)))


def resident_mib(container):
    """The container's resident memory in MiB, each page once: anonymous + mapped files.

    Summing every process's RSS would count the pages that gunicorn's master and worker
    share (code, libraries, whatever was loaded before the fork) twice.
    """
    memory = container.stats(stream=False, one_shot=True)["memory_stats"]["stats"]
    if "anon" in memory:  # cgroup v2
        return (memory["anon"] + memory["file_mapped"]) / 2**20
    return (memory["rss"] + memory["mapped_file"]) / 2**20


def process_rss_mib(container):
    """The sum of every process's RSS in the container, in MiB (shared pages counted twice)."""
    top = container.top(ps_args="-o pid,rss")
    rss_column = top["Titles"].index("RSS")
    return sum(int(row[rss_column]) for row in top["Processes"]) / 1024


def wrk(url, connections, seconds):
    """One wrk run; returns requests/s, latency percentiles (ms) and errors."""
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s"]
    command += ["--timeout", "5s", "-s", str(BENCH / "report.lua"), url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((line for line in output.splitlines() if line.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result for {url}:\n{output}")
    raw = json.loads(line.removeprefix("BENCH "))
    errors = sum(raw[key] for key in raw if key.endswith("_errors") or key == "timeouts")
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
    }


def measure_point(client, setup, connections, seconds):
    cpu_before = cpu_seconds(client, setup)
    point = wrk(setup.url, connections, seconds)
    cpu_used = cpu_seconds(client, setup) - cpu_before
    point["cpu_s_per_1k"] = 1000 * cpu_used / point["requests"] if point["requests"] else None
    return point


def seconds_until_new_replica_answers(client, setup, limit):
    """Scale the app by one; seconds until a request is answered by the new replica, or None."""
    known = {c.attrs["Config"]["Hostname"] for c in containers(client, setup, "app")}
    began = time.monotonic()
    setup.compose("up", "-d", "--no-deps", "--scale", f"app={len(known) + 1}", "app")
    with requests.Session() as http:
        # A fresh connection each time, so that nginx balances every request anew.
        http.headers["Connection"] = "close"
        while time.monotonic() - began < limit:
            try:
                hostname = http.get(setup.url, timeout=2).json()["hostname"]
            except (requests.RequestException, ValueError, KeyError):
                hostname = None
            if hostname and hostname not in known:
                return time.monotonic() - began
            time.sleep(0.05)
    return None


def image_mib(client, setup):
    """Size of the image(s) the setup runs, in MiB."""
    tags = {c.attrs["Config"]["Image"] for c in containers(client, setup)}
    return {tag: client.images.get(tag).attrs["Size"] / 2**20 for tag in sorted(tags)}


def machine():
    """What the numbers were measured on."""
    meminfo = Path("/proc/meminfo").read_text().split()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    docker_version = docker.from_env().version()["Version"]
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()[:2]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "kernel": platform.release(),
        "docker": docker_version,
        "load_generator": " ".join(wrk_version),
        # Other work on the machine; a benchmark on a busy machine says so.
        "load_average": round(os.getloadavg()[0], 1),
    }


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
                key: spread([run[key] for run in runs])
                for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "cpu_s_per_1k")
            } | {"errors": sum(run["errors"] for run in runs)}
    return summary


def ratios(points, headline):
    """Per-repeat ratios at the headline concurrency, from measurements taken seconds apart."""
    by_repeat = {}
    for point in points:
        if point["c"] == headline:
            by_repeat.setdefault(point["repeat"], {})[point["setup"]] = point
    wanted = {
        "stack ÷ baseline, requests/s": ("stack", "baseline", "rps"),
        "stack ÷ baseline, p99 latency": ("stack", "baseline", "p99_ms"),
        "stack ÷ ceiling, requests/s": ("stack", "ceiling", "rps"),
        # CPU time per request is the figure a busy machine disturbs least.
        "stack ÷ baseline, CPU per request": ("stack", "baseline", "cpu_s_per_1k"),
        "stack ÷ one replica, requests/s": ("stack", "single", "rps"),
        # The best any app could do here, and what Flask and this app cost on top of it.
        "server floor ÷ baseline, requests/s": ("floor", "baseline", "rps"),
        "server floor ÷ baseline, p99 latency": ("floor", "baseline", "p99_ms"),
        "server floor ÷ ceiling, requests/s": ("floor", "ceiling", "rps"),
        "stack ÷ server floor, requests/s": ("stack", "floor", "rps"),
    }
    found = {}
    for name, (top, bottom, key) in wanted.items():
        values = [
            runs[top][key] / runs[bottom][key]
            for runs in by_repeat.values()
            if top in runs and bottom in runs and runs[bottom][key]
        ]
        if values:
            found[name] = spread(values)
    return found


def goals(found, summary, headline, rss):
    """The issue's goals at the headline concurrency: (goal, measured, met, server floor).

    The server floor's own figure for a goal shows whether any app could meet it here.
    """
    checks = []

    def add(name, ratio_name, test, shown):
        if ratio_name in found:
            value = found[ratio_name]["median"]
            floor = found.get(ratio_name.replace("stack", "server floor", 1))
            floor_text = shown(floor["median"]) if floor else "–"
            checks.append((name, shown(value), test(value), floor_text))

    add(
        "≥ 4× the baseline's requests/s",
        "stack ÷ baseline, requests/s",
        lambda v: v >= 4,
        lambda v: f"{v:.2f}×",
    )
    add(
        "p99 ≤ ⅓ of the baseline's",
        "stack ÷ baseline, p99 latency",
        lambda v: v <= 1 / 3,
        lambda v: f"{v:.2f}×",
    )
    add(
        "≥ 15 % of the ceiling's requests/s",
        "stack ÷ ceiling, requests/s",
        lambda v: v >= 0.15,
        lambda v: f"{100 * v:.1f} %",
    )
    if ("stack", headline) in summary:
        errors = summary["stack", headline]["errors"]
        checks.append(("zero errors", str(errors), errors == 0, "–"))
    if rss.get("stack"):
        biggest = max(rss["stack"])
        checks.append(("< 64 MiB resident per replica", f"{biggest:.1f} MiB", biggest < 64, "–"))
    return checks


def fmt(stat, digits=0, with_spread=False):
    if stat is None:
        return "–"
    text = f"{stat['median']:,.{digits}f}"
    if with_spread:
        text += f" ({stat['min']:,.{digits}f}–{stat['max']:,.{digits}f})"
    return text


def seconds(value):
    return "–" if value is None else f"{value:.1f}"


def markdown(report):
    """The results as a Markdown document: load table, resources, ratios, goals."""
    plan, host = report["plan"], report["machine"]
    lines = [
        f"# Benchmark, {report['finished']}",
        "",
        f"Command: `{plan['command']}`. Machine: {host['cpus']} × {host['cpu_model']}, "
        f"{host['memory_gib']} GiB, Linux {host['kernel']}, Docker {host['docker']}, "
        f"{host['load_generator']}, 1-minute load average {host['load_average']} at the end. "
        f"{plan['repeats']} repeat(s) of {plan['duration']} s per point, interleaved; "
        "medians, with min–max over repeats for requests/s.",
        "",
        "| setup | connections | requests/s | p50 ms | p95 ms | p99 ms | errors | CPU s / 1k req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['label']} | {row['c']} | {fmt(row['rps'], 0, True)} "
            f"| {fmt(row['p50_ms'], 1)} | {fmt(row['p95_ms'], 1)} | {fmt(row['p99_ms'], 1)} "
            f"| {row['errors']} | {fmt(row['cpu_s_per_1k'], 3)} |"
        )
    lines += [
        "",
        "| setup | image(s), MiB | up → ready, s | resident MiB per replica, max (Σ RSS) "
        "| `--scale` → new replica answers, s |",
        "|---|---|---:|---:|---:|",
    ]
    for row in report["setups"]:
        images = ", ".join(f"`{tag}` {size:.0f}" for tag, size in row["images"].items())
        rss, process_rss = row["rss_mib"], row["process_rss_mib"]
        rss_text = f"{max(rss):.1f} ({max(process_rss):.1f})" if rss else "–"
        scale = row.get("scale_seconds", "not measured")
        if scale is None:
            scale = f"never within {report['plan']['scale_limit']} s"
        elif isinstance(scale, float):
            scale = f"{scale:.1f}"
        lines.append(
            f"| {row['label']} | {images} | {seconds(row['up_seconds'])} | {rss_text} | {scale} |"
        )
    lines += [
        "",
        "Resident memory counts each page of a replica once (cgroup anonymous + mapped "
        "files); Σ RSS adds up its processes' RSS, counting what they share twice. "
        "Up → ready: from `docker-compose up` (images built) until every container is "
        "running, healthy where it has a healthcheck, and `/info` answers; – when health "
        "never settled. `--scale`: from `up --scale app=6` until a request is answered by "
        "the new replica. The stack ran with its per-client rate limits raised, since all "
        "of wrk's connections come from one address.",
        "",
        f"Ratios at {plan['headline']} connections, median (min–max) over repeats:",
        "",
    ]
    for name, stat in report["ratios"].items():
        lines.append(f"- {name}: **{fmt(stat, 2)}** ({stat['min']:.2f}–{stat['max']:.2f})")
    lines += [
        "",
        "The server floor column is the same goal measured on the server floor (a bare WSGI "
        "callable in place of the Flask app): where it misses too, no app on this server can "
        "meet the goal on this machine.",
        "",
        "| goal | measured | met | server floor |",
        "|---|---:|:---:|---:|",
    ]
    for name, measured, met, floor in report["goals"]:
        lines.append(f"| {name} | {measured} | {'yes' if met else '**no**'} | {floor} |")
    return "\n".join(lines) + "\n"


def chart(report, path):
    """Throughput and p99 latency against concurrency, one line per setup (min–max bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
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
    # One legend under both plots, where it hides no line.
    handles, labels = latency.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    host = report["machine"]
    figure.suptitle(
        f"{report['plan']['command']} — {host['cpus']} CPUs, Docker {host['docker']}, "
        f"{report['finished']}",
        fontsize=9,
    )
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main():
    quick = os.environ.get("BENCH_QUICK") == "1"
    plan = {
        "quick": quick,
        "concurrency": [
            int(c) for c in setting("BENCH_CONCURRENCY", "10" if quick else "10,50,100").split(",")
        ],
        "duration": int(setting("BENCH_DURATION", 2 if quick else 8)),
        "repeats": int(setting("BENCH_REPEATS", 1 if quick else 3)),
        "scale_limit": 20,
    }
    plan["headline"] = int(setting("BENCH_HEADLINE", 10 if quick else 50))
    overrides = " ".join(
        f"{k}={v}"
        for k, v in sorted(os.environ.items())
        if k.startswith("BENCH_") and k != "BENCH_OUTPUT"
    )
    plan["command"] = f"{overrides} make bench".strip()
    output = Path(setting("BENCH_OUTPUT", BENCH / "results"))
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing (make bench installs it)")

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    client = docker.from_env()
    setups = make_setups(quick)
    started = []
    points, rows = [], {}
    try:
        with console.status("building images"):
            for setup in setups:
                if "app" in setup.services:
                    setup.compose("build", "app")
        for setup in setups:
            started.append(setup)
            with console.status(f"starting {setup.label} ({setup.project}, :{setup.port})"):
                up_seconds = start(client, setup)
            console.log(f"{setup.label}: ready in {seconds(up_seconds)} s on :{setup.port}")
            wrk(setup.url, 10, 1)  # warm up: first connections, lazy imports, caches
            rows[setup.name] = {
                "name": setup.name,
                "label": setup.label,
                "project": setup.project,
                "up_seconds": up_seconds,
            }

        total = plan["repeats"] * len(plan["concurrency"]) * len(setups)
        with Progress(console=console) as progress:
            task = progress.add_task("measuring", total=total)
            for repeat in range(plan["repeats"]):
                for connections in plan["concurrency"]:
                    # Rotate the order so that no setup always follows the same one.
                    for setup in setups[repeat % len(setups) :] + setups[: repeat % len(setups)]:
                        progress.update(task, description=f"{setup.label}, {connections} conn.")
                        point = measure_point(client, setup, connections, plan["duration"])
                        points.append(
                            {"setup": setup.name, "c": connections, "repeat": repeat} | point
                        )
                        progress.console.log(
                            f"{setup.label:18} c={connections:<4} {point['rps']:8.0f} req/s  "
                            f"p99 {point['p99_ms']:7.1f} ms  errors {point['errors']}"
                        )
                        progress.advance(task)

        for setup in setups:
            apps = containers(client, setup, "app")
            rows[setup.name]["rss_mib"] = [resident_mib(c) for c in apps]
            rows[setup.name]["process_rss_mib"] = [process_rss_mib(c) for c in apps]
            rows[setup.name]["images"] = image_mib(client, setup)
        if not quick:
            for setup in setups:
                if setup.name in ("stack", "baseline"):
                    with console.status(f"{setup.label}: timing --scale"):
                        rows[setup.name]["scale_seconds"] = seconds_until_new_replica_answers(
                            client, setup, plan["scale_limit"]
                        )
    finally:
        for setup in reversed(started):
            with console.status(f"removing {setup.label}"):
                try:
                    setup.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")
                except Exception as error:  # noqa: BLE001 - keep removing the others
                    console.print(f"[red]could not remove {setup.project}: {error}")

    summary = summarise(points, setups, plan["concurrency"])
    found = ratios(points, plan["headline"])
    rss = {name: row["rss_mib"] for name, row in rows.items()}
    report = {
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "plan": plan,
        "machine": machine(),
        "setups": list(rows.values()),
        "summary": [
            {"setup": s.name, "label": s.label, "c": c, **summary[s.name, c]}
            for s in setups
            for c in plan["concurrency"]
        ],
        "ratios": found,
        "goals": goals(found, summary, plan["headline"], rss),
        "points": points,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    (output / "latest.md").write_text(markdown(report))
    chart(report, output / "latest.png")
    if output == BENCH / "results":
        show_in_readme(markdown(report))
    print_closing_note(report, output)


def show_in_readme(results):
    """Put the latest results between the README's bench markers."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        results = results.replace("# Benchmark", "#### Latest run", 1)
        readme.write_text(f"{before}{begin}\n{results}{end}{after}")


def print_closing_note(report, output):
    table = Table(title=f"at {report['plan']['headline']} connections")
    for column in ("setup", "requests/s", "p99 ms", "errors", "CPU s/1k"):
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
    for name, stat in report["ratios"].items():
        console.print(
            f"{name}: [bold]{stat['median']:.2f}[/] (min–max {stat['min']:.2f}–{stat['max']:.2f})"
        )
    for name, measured, met, floor in report["goals"]:
        verdict = "[green]met" if met else "[red]not met"
        console.print(f"goal {name}: {measured} {verdict}[/] (server floor: {floor})")
    console.print(
        f"wrote {output / 'latest.md'}, {output / 'latest.png'}, {output / 'latest.json'}"
    )


if __name__ == "__main__":
    main()
