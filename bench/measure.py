"""Measuring one setup: start it, check its replicas, load it with wrk, read its cgroups.

CPU and memory come from the containers' own counters through the Docker API, so every
setup is measured the same way whatever runs inside it.
"""

import json
import os
import platform
import resource
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests

BENCH = Path(__file__).resolve().parent


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


def answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def start(client, setup, log, timeout=150):
    """Start a setup; seconds from `up` until all is healthy and /info answers (None: never)."""
    began = time.monotonic()
    # One service at a time, in the setup's order: a front nginx that resolves its
    # upstream once must start after the replicas, and Compose v1 would abort the
    # stack's nginx if a replica's healthcheck timed out once on a loaded machine.
    for service in setup.services:
        setup.compose("up", "-d", "--no-deps", service)
    while not (all_healthy(client, setup) and answers(setup.url)):
        if time.monotonic() - began > timeout:
            if answers(setup.url):
                log(f"[yellow]{setup.label}: answers, but not all healthy after {timeout} s")
                return None
            logs = setup.compose("logs", "--tail=20").stdout
            raise RuntimeError(f"{setup.label}: not answering after {timeout} s\n{logs}")
        time.sleep(0.2)
    return time.monotonic() - began


def stop(setup):
    """Stop every container of a setup (kept, to be started again): no CPU while others run."""
    setup.compose("stop", "--timeout", "20")


def starts(client, setup):
    """Every container's (restart count, start time): a change means it restarted."""
    return {
        c.name: (c.attrs["RestartCount"], c.attrs["State"]["StartedAt"])
        for c in containers(client, setup)
    }


def replicas_answering(client, setup, timeout=60):
    """(replicas that answered /info, replicas the engine reports), by hostname.

    The hostname in the body (the seed's and this app's /info) or X-Served-By names the
    replica; a fresh connection each time makes the front balance every request anew. A
    replica still starting (a peer's uWSGI) costs a front nginx a failure, and it is left
    out for a while: keep asking until every replica has answered or `timeout` s passed.
    """
    expected = {c.attrs["Config"]["Hostname"] for c in containers(client, setup, setup.app_service)}
    seen = set()
    deadline = time.monotonic() + timeout
    with requests.Session() as http:
        http.headers["Connection"] = "close"
        while not expected <= seen and time.monotonic() < deadline:
            try:
                response = http.get(setup.url, timeout=5)
                hostname = response.json().get("hostname")
            except (requests.RequestException, ValueError):
                response, hostname = None, None
            if response is not None:
                seen.add(response.headers.get("X-Served-By") or hostname)
            time.sleep(0.05)
    return len(expected & seen), len(expected)


def counters(client, setup):
    """Per service: CPU seconds (user, kernel), throttled seconds, context switches.

    CPU and throttling are the cgroups' own counters (cpu.stat, through the Docker API);
    context switches are read from /proc for every process the container runs now.
    """

    def read(container):
        stats = container.stats(stream=False, one_shot=True)["cpu_stats"]
        usage = stats["cpu_usage"]
        switches = 0
        for row in container.top(ps_args="-o pid")["Processes"]:
            switches += context_switches(row[0])
        return container.labels["com.docker.compose.service"], {
            "cpu_s": usage["total_usage"] / 1e9,
            "user_s": usage.get("usage_in_usermode", 0) / 1e9,
            "kernel_s": usage.get("usage_in_kernelmode", 0) / 1e9,
            "throttled_s": stats.get("throttling_data", {}).get("throttled_time", 0) / 1e9,
            "context_switches": switches,
        }

    totals = {}
    with ThreadPoolExecutor() as pool:
        running = [c for c in containers(client, setup) if c.status == "running"]
        for service, values in pool.map(read, running):
            mine = totals.setdefault(service, Counter())
            mine.update(values)
    return totals


def context_switches(pid):
    """Voluntary + involuntary context switches of one process so far (0 once it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    # voluntary_ctxt_switches and nonvoluntary_ctxt_switches
    return sum(int(line.split()[1]) for line in lines if "ctxt_switches:" in line)


def host_counters(port):
    """What the machine spends outside the containers: softirq and IRQ time (all CPUs, so
    wrk's side of the network too), the CPU of the docker-proxy serving `port`, and the
    CPU time the hypervisor gave to other guests (steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # cpu  user nice system idle iowait irq softirq steal ...
    interrupts = (int(fields[6]) + int(fields[7])) / ticks
    # steal: time this virtual machine's CPUs wanted to run and the hypervisor ran
    # another guest. Not spent by the setup, but it slows every figure down.
    steal = int(fields[8]) / ticks
    proxy = 0.0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args[0].endswith(b"docker-proxy") and str(port).encode() in args:
            try:
                stat = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            proxy += (int(stat[11]) + int(stat[12])) / ticks
    return {"interrupts_s": interrupts, "docker_proxy_s": proxy, "steal_s": steal}


def difference(after, before):
    return {key: after[key] - before.get(key, 0) for key in after}


def idle_cpu(client, setup, seconds):
    """CPU seconds per second each service spends with no load: healthchecks, timers."""
    time.sleep(2)  # the warm-up's last requests and keepalive timers settle
    before = counters(client, setup)
    time.sleep(seconds)
    after = counters(client, setup)
    return {
        service: (after[service]["cpu_s"] - before.get(service, {}).get("cpu_s", 0)) / seconds
        for service in after
    }


def flask_cost(client, image, calls):
    """bench/flask_cost.py in the app image: CPU ms per in-process call of each variant."""
    output = client.containers.run(
        image,
        ["python3", "/bench/flask_cost.py", str(calls)],
        environment={"PYTHONPATH": "/app"},
        volumes={str(BENCH / "flask_cost.py"): {"bind": "/bench/flask_cost.py", "mode": "ro"}},
        network_disabled=True,
        read_only=True,
        remove=True,
    )
    return json.loads(output.decode().strip().splitlines()[-1])


def resident_mib(container):
    """The container's resident memory in MiB, each page once: anonymous + mapped files.

    Summing every process's RSS would count the pages that a master and its workers
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
        "seconds": raw["duration_us"] / 1e6,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p95_ms": raw["p95_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
    }


def measure_point(client, setup, connections, seconds):
    """One load point, with what every container and the host spent during it.

    A container that restarted during the point (a crash, an OOM kill) starts its cgroup
    counters again from zero: its CPU is unknown, so the point keeps no CPU figures and
    names the container under "restarted"; its requests/s and errors stand.
    """
    started = starts(client, setup)
    before, host_before = counters(client, setup), host_counters(setup.port)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    point = wrk(setup.url, connections, seconds)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after, host_after = counters(client, setup), host_counters(setup.port)
    now = starts(client, setup)
    point["restarted"] = sorted(name for name in now if now[name] != started.get(name))
    if point["restarted"]:
        point["cpu_s_per_1k"], point["services"], point["host"] = None, None, None
        return point
    services = {name: difference(after[name], before.get(name, {})) for name in after}
    cpu_used = sum(used["cpu_s"] for used in services.values())
    point["cpu_s_per_1k"] = 1000 * cpu_used / point["requests"] if point["requests"] else None
    point["services"] = services
    point["host"] = difference(host_after, host_before)
    point["host"]["wrk_s"] = (wrk_after.ru_utime + wrk_after.ru_stime) - (
        wrk_before.ru_utime + wrk_before.ru_stime
    )
    return point


def seconds_until_new_replica_answers(client, setup, limit):
    """Scale the app by one; seconds until a request is answered by the new replica, or None."""
    service = setup.app_service
    known = {c.attrs["Config"]["Hostname"] for c in containers(client, setup, service)}
    began = time.monotonic()
    setup.compose("up", "-d", "--no-deps", "--scale", f"{service}={len(known) + 1}", service)
    with requests.Session() as http:
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


# Where a sample's time is charged: to the innermost frame that belongs to one of these
# (so the standard library's time goes to whoever called it). The app's additions by
# what they do, then the libraries by package. A frame reads "name (path:line)".
PROFILE_GROUPS = [
    ("metrics (gateway_metrics, prometheus_client)", ("gateway_metrics.py", "prometheus_client/")),
    ("access line (gateway_logging)", ("gateway_logging.py", "pythonjsonlogger/")),
    ("ProxyFix", ("werkzeug/middleware/proxy_fix.py",)),
    ("the app's handlers (gateway.py, seed app)", ("gateway.py", "flask_floor.py", "seed_app.py")),
    ("JSON encoding", ("json/",)),
    ("Flask and Werkzeug", ("flask/", "werkzeug/")),
    ("gunicorn", ("gunicorn/",)),
    ("gevent", ("gevent/", "greenlet")),
]
OTHER = "other (Python itself, the standard library)"


def charged_to(frames):
    for frame in reversed(frames):
        for name, marks in PROFILE_GROUPS:
            if any(mark in frame for mark in marks):
                return name
    return OTHER


def profile(client, setup, connections, seconds):
    """Share of a replica's busy samples per group (PROFILE_GROUPS) while wrk loads it.

    py-spy runs on the host and attaches to the replica's busiest process (the gunicorn
    worker), so the image needs nothing. Returns None when py-spy is missing or refused.
    """
    py_spy = Path(os.environ.get("VIRTUAL_ENV", BENCH.parent / ".venv")) / "bin" / "py-spy"
    replica = containers(client, setup, setup.app_service)[0]
    processes = replica.top(ps_args="-o pid,ppid,args")["Processes"]
    pids = {row[0] for row in processes}
    # The worker: a process whose parent is in the same container (the master's child).
    workers = [row[0] for row in processes if row[1] in pids]
    if not py_spy.exists() or not workers:
        return None
    with tempfile.NamedTemporaryFile(suffix=".txt") as raw:
        command = [str(py_spy), "record", "--pid", workers[0], "--duration", str(seconds)]
        command += ["--rate", "200", "--format", "raw", "--nonblocking", "--output", raw.name]
        sampler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wrk(setup.url, connections, seconds)
        if sampler.wait(timeout=seconds + 30) != 0:
            return None
        lines = Path(raw.name).read_text().splitlines()
    shares, total = Counter(), 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if "(" not in stack:
            continue
        total += int(count)
        shares[charged_to(stack.split(";"))] += int(count)
    return {"samples": total, "shares": {k: v / total for k, v in shares.items()} if total else {}}


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
    compose = subprocess.run(
        [str(BENCH.parent / "scripts/compose"), "--which"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "kernel": platform.release(),
        "docker": docker_version,
        "compose": compose,
        "load_generator": " ".join(wrk_version),
        # Other work on the machine; a benchmark on a busy machine says so.
        "load_average": round(os.getloadavg()[0], 1),
    }
