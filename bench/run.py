"""Benchmark every setup under bench/setups/ side by side: `make bench`.

Every setup (bench/discover.py) is created under a Compose project of its own on a port
of its own, and the load points are interleaved (repeat → setup → concurrency), so that
the ratios compare measurements taken seconds apart on a shared machine. Only the setup
being measured runs: the others are stopped, because every container's healthcheck
costs CPU (fifteen setups of five replicas each, all up, saturated two cores in the
2026-12-03 run). A setup is started again for each repeat, waited on until healthy,
warmed up, measured at every concurrency and stopped. Everything is removed at the end,
also on Ctrl-C or an error.

Settings (environment): BENCH_QUICK=1 (the smoke run `make test` uses), BENCH_CONCURRENCY
(10,50,100), BENCH_DURATION (8 s per point), BENCH_REPEATS (3), BENCH_HEADLINE (50: the
concurrency the ratios and goals are quoted at), BENCH_FIRST_PORT (default: free ports),
BENCH_OUTPUT (bench/results), BENCH_SETUPS (a comma-separated list of setup or lever
folder names), BENCH_LEVERS (lever folder names measured beside the default setups),
BENCH_PROFILE_SECONDS (10; 0 skips the py-spy profile), BENCH_IDLE_SECONDS (10: each
setup's CPU with no load, for the healthchecks' share), BENCH_FLASK_CALLS (10000 per
batch of bench/flask_cost.py, Flask's in-process cost). Settings of the stack itself
(GUNICORN_WORKER_CLASS=gthread, ...) pass through.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import docker
from rich.progress import Progress

import analysis
import discover
import measure
import present

console = present.console


def setting(name, default):
    return os.environ.get(name) or default


def make_plan():
    quick = os.environ.get("BENCH_QUICK") == "1"
    plan = {
        "quick": quick,
        "concurrency": [
            int(c) for c in setting("BENCH_CONCURRENCY", "10" if quick else "10,50,100").split(",")
        ],
        "duration": int(setting("BENCH_DURATION", 2 if quick else 8)),
        "repeats": int(setting("BENCH_REPEATS", 1 if quick else 3)),
        "headline": int(setting("BENCH_HEADLINE", 10 if quick else 50)),
        "profile_seconds": int(setting("BENCH_PROFILE_SECONDS", 0 if quick else 10)),
        "idle_seconds": int(setting("BENCH_IDLE_SECONDS", 2 if quick else 10)),
        "flask_calls": int(setting("BENCH_FLASK_CALLS", 300 if quick else 10000)),
        "scale_limit": 20,
    }
    overrides = " ".join(
        f"{k}={v}"
        for k, v in sorted(os.environ.items())
        if k.startswith("BENCH_") and k != "BENCH_OUTPUT"
    )
    plan["command"] = f"{overrides} make bench".strip()
    return plan


def bring_up(client, setups, rows):
    """Build every setup, start each once (alone), check that every replica answers."""
    with console.status("building images"):
        for setup in setups:
            setup.compose("build")
    # The stack's nginx also serves its TLS port: the certificate `make up` makes (certs/).
    subprocess.run([discover.ROOT / "scripts/tls-certs.sh"], env=setups[0].env, check=True)
    for setup in setups:
        with console.status(f"starting {setup.label} ({setup.project}, :{setup.port})"):
            up_seconds = measure.start(client, setup, console.log)
        replicas = None
        if setup.app_service:
            replicas = measure.replicas_answering(client, setup)
            if replicas[0] < replicas[1]:
                raise RuntimeError(
                    "{}: only {}/{} replicas answered /info through the front in 60 s".format(
                        setup.label, *replicas
                    )
                )
        console.log(
            f"{setup.label}: ready in {present.seconds(up_seconds)} s on :{setup.port}"
            + (", replicas answering {}/{}".format(*replicas) if replicas else "")
        )
        measure.wrk(setup.url, 10, setup.warmup)
        measure.stop(setup)
        rows[setup.name] = {
            "name": setup.name,
            "label": setup.label,
            "source": setup.source,
            "folder": str(setup.folder.relative_to(discover.ROOT)),
            "peer": setup.peer,
            "project": setup.project,
            "up_seconds": up_seconds,
            "replicas": replicas,
        }


def load_points(client, setups, plan):
    """Every point, interleaved: repeat → setup (in a rotating order) → concurrency.

    A setup is started once per repeat and measured at every concurrency before it is
    stopped again: starting costs more than a point, and the setups still take turns
    within seconds of each other.
    """
    points = []
    total = plan["repeats"] * len(plan["concurrency"]) * len(setups)
    with Progress(console=console) as progress:
        task = progress.add_task("measuring", total=total)
        for repeat in range(plan["repeats"]):
            # Rotate the order so that no setup always follows the same one.
            shift = repeat % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                progress.update(task, description=f"{setup.label}, repeat {repeat + 1}")
                with alone(client, setup, plan["concurrency"][0]):
                    for connections in plan["concurrency"]:
                        point = measure.measure_point(client, setup, connections, plan["duration"])
                        # Kept in the report, so that "alone" is a measured fact, not a hope.
                        point["others_running"] = sum(
                            c.status == "running"
                            for other in setups
                            if other is not setup
                            for c in measure.containers(client, other)
                        )
                        points.append(
                            {"setup": setup.name, "c": connections, "repeat": repeat} | point
                        )
                        log_point(progress, setup, connections, point)
                        progress.advance(task)
    return points


def log_point(progress, setup, connections, point):
    restarted = f"  [red]restarted: {', '.join(point['restarted'])}" if point["restarted"] else ""
    progress.console.log(
        f"{setup.label:30} c={connections:<4} {point['rps']:8.0f} req/s  "
        f"p99 {point['p99_ms']:7.1f} ms  errors {point['errors']}{restarted}"
    )


@contextlib.contextmanager
def alone(client, setup, connections):
    """The setup started (the only one running), healthy and warmed up; stopped after."""
    measure.start(client, setup, console.log)
    measure.wrk(setup.url, connections, setup.warmup)
    try:
        yield
    finally:
        measure.stop(setup)


def resources(client, setups, plan, rows):
    """Memory per replica after load, image sizes, then (full runs) profile, --scale timing."""
    for setup in setups:
        with alone(client, setup, plan["headline"]):
            # Memory after a load point's worth of requests, as a replica holds it in use.
            measure.wrk(setup.url, plan["headline"], plan["duration"])
            apps = measure.containers(client, setup, setup.app_service) if setup.app_service else []
            rows[setup.name]["rss_mib"] = [measure.resident_mib(c) for c in apps]
            rows[setup.name]["process_rss_mib"] = [measure.process_rss_mib(c) for c in apps]
            rows[setup.name]["images"] = measure.image_mib(client, setup)
            if setup.profile and plan["profile_seconds"]:
                with console.status(f"{setup.label}: profiling a replica"):
                    rows[setup.name]["profile"] = measure.profile(
                        client, setup, plan["headline"], plan["profile_seconds"]
                    )
            if setup.scale and not plan["quick"]:
                with console.status(f"{setup.label}: timing --scale"):
                    rows[setup.name]["scale_seconds"] = measure.seconds_until_new_replica_answers(
                        client, setup, plan["scale_limit"]
                    )


def idle(client, setups, plan):
    """Every setup's CPU per second with no load (healthchecks, timers), each alone."""
    found = {}
    for setup in setups:
        with alone(client, setup, 10), console.status(f"{setup.label}: CPU with no load"):
            found[setup.name] = measure.idle_cpu(client, setup, plan["idle_seconds"])
    return found


def flask_cost(client, setups, plan):
    """bench/flask_cost.py in the stack's app image: Flask's own CPU per call, no server."""
    stack = next((s for s in setups if s.name == "stack"), None)
    if stack is None:
        return None
    image = measure.containers(client, stack, stack.app_service)[0].attrs["Config"]["Image"]
    # Every setup is stopped here: the in-process calls have the machine to themselves.
    with console.status(f"Flask in-process in {image}"):
        found = measure.flask_cost(client, image, plan["flask_calls"])
    console.log(
        "Flask in-process, CPU ms per call: "
        + ", ".join(f"{name} {ms:.4f}" for name, ms in found["ms_per_call"].items())
    )
    return found


def tear_down(setups):
    for setup in reversed(setups):
        with console.status(f"removing {setup.label}"):
            try:
                setup.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")
            except Exception as error:  # noqa: BLE001 - keep removing the others
                console.print(f"[red]could not remove {setup.project}: {error}")


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main():
    plan = make_plan()
    output = Path(setting("BENCH_OUTPUT", discover.ROOT / "bench" / "results"))
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing (make bench installs it)")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    client = docker.from_env()
    setups = discover.choose(
        plan["quick"], os.environ.get("BENCH_SETUPS", ""), os.environ.get("BENCH_LEVERS", "")
    )
    rows = {}
    try:
        bring_up(client, setups, rows)
        idle_cpu = idle(client, setups, plan)
        points = load_points(client, setups, plan)
        resources(client, setups, plan, rows)
        flask = flask_cost(client, setups, plan)
    finally:
        # Every setup, started or not: a failed `up` may have left containers behind.
        tear_down(setups)

    # The raw points first: an error in the analysis below must not lose the run.
    output.mkdir(parents=True, exist_ok=True)
    raw = {"plan": plan, "setups": list(rows.values()), "idle_cpu": idle_cpu, "flask": flask}
    (output / "latest.json").write_text(json.dumps(raw | {"points": points}, indent=1) + "\n")
    raw |= {
        "points": points,
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": measure.machine(),
    }
    write_report(raw, setups, output)


def write_report(raw, setups, output):
    """From a run's raw figures: ratios, limit, goals; latest.json/.md/.png, README lines."""
    plan, points, rows = raw["plan"], raw["points"], {row["name"]: row for row in raw["setups"]}
    idle_cpu = raw["idle_cpu"]
    summary = analysis.summarise(points, setups, plan["concurrency"])
    found = analysis.ratios(points, setups, summary, plan["headline"])
    rss = {name: row["rss_mib"] for name, row in rows.items()}
    stack_profile = rows.get("stack", {}).get("profile")
    limit = analysis.limit(
        points, setups, summary, idle_cpu, raw["flask"], stack_profile, plan["headline"]
    )
    report = {
        "finished": raw["finished"],
        "plan": plan,
        "machine": raw["machine"],
        "setups": list(rows.values()),
        "summary": [
            {"setup": s.name, "label": s.label, "c": c, **summary[s.name, c]}
            for s in setups
            for c in plan["concurrency"]
        ],
        "ratios": found,
        "limit": limit,
        "flask": raw["flask"],
        "idle_cpu": idle_cpu,
        "steal": analysis.steal(points, raw["machine"]["cpus"]),
        "goals": analysis.goals(setups, summary, found, rss, plan["headline"], limit),
        "points": points,
    }
    (output / "latest.json").write_text(json.dumps(report, indent=1) + "\n")
    (output / "latest.md").write_text(present.markdown(report))
    present.chart(report, output / "latest.png")
    if output == discover.ROOT / "bench" / "results":
        show_in_readme(present.readme_summary(report))
    present.closing_note(report, output)


def report_again(path):
    """`run.py --report-only [latest.json]`: the report of a finished run, written anew
    from its raw figures (after a change to the analysis or the tables), without
    measuring again. The setups are read from the folders the run recorded."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        sys.exit(f"bench: cannot read a run's report from {path}: {error}")
    if "points" not in raw or "setups" not in raw:
        sys.exit(f"bench: {path} holds no run's points and setups (not a make bench report)")
    # A report written before "flask" was kept at the top holds it under "limit".
    raw.setdefault("flask", (raw.get("limit") or {}).get("flask"))
    setups = [discover.load(discover.ROOT / row["folder"]) for row in raw["setups"]]
    for setup, row in zip(setups, raw["setups"], strict=True):
        setup.project = row["project"]
    write_report(raw, setups, path.parent)


def show_in_readme(results):
    """Put the latest summary between the README's bench markers."""
    readme = discover.ROOT / "README.md"
    text = readme.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        readme.write_text(f"{before}{begin}\n{results}{end}{after}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report-only"]:
        report_again(
            Path(sys.argv[2] if len(sys.argv) > 2 else "bench/results/latest.json").resolve()
        )
    else:
        main()
