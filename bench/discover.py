"""Setups are data: every folder under bench/setups/ with a setup.toml is one setup.

A folder holds its compose file(s), a README.md saying what it is and where it comes
from, and setup.toml (see bench/setups/stack/setup.toml for every key). The runner
measures whatever it finds; to add a setup, add a folder. Folders under bench/levers/
have the same form and are measured only when BENCH_SETUPS names them.
"""

import os
import re
import socket
import subprocess
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ROOT / "bench" / "setups"
LEVERS = ROOT / "bench" / "levers"
# The one place that decides which Compose runs (v2 when there is one, else v1).
COMPOSE = ROOT / "scripts" / "compose"


@dataclass
class Setup:
    """One thing to measure: a Compose project on a host port of its own."""

    name: str
    folder: Path
    label: str
    source: str
    files: list
    env: dict
    services: list
    # The service whose containers are the replicas; "" when there is no app.
    app_service: str = "app"
    # A setup a user would pick instead of this stack: the goals compare with it.
    peer: bool = False
    # It runs Flask: the CPU and memory goals compare the Flask setups.
    flask: bool = False
    # Time `up --scale` until a new replica answers (full runs only).
    scale: bool = False
    # Part of the quick smoke (BENCH_QUICK=1).
    quick: bool = False
    # py-spy samples a replica under load (full runs only).
    profile: bool = False
    # Seconds of load before measuring: first connections, lazy imports, a JIT's warm-up.
    warmup: int = 1
    # Place in the tables: lower first.
    order: int = 100
    project: str = ""
    port: int = 0

    def compose(self, *args, timeout=900):
        files = [arg for file in self.files for arg in ("-f", str(file))]
        command = [str(COMPOSE), "-p", self.project, *files, *args]
        result = subprocess.run(
            command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        return result

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/info"


def load(folder):
    """The setup described by folder/setup.toml; unknown keys are an error."""
    spec = tomllib.loads((folder / "setup.toml").read_text())
    files = [(folder / file).resolve() for file in spec.pop("compose", ["docker-compose.yml"])]
    env = {key: str(value) for key, value in spec.pop("env", {}).items()}
    return Setup(name=folder.name, folder=folder, files=files, env=env, **spec)


def found(parent):
    return {path.parent.name: path.parent for path in sorted(parent.glob("*/setup.toml"))}


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


def choose(quick, wanted="", extra_levers=""):
    """The setups to measure, each with its environment, a fresh project and a port.

    `wanted` (BENCH_SETUPS) names setups or levers; by default every setup, or in quick
    mode those marked quick. `extra_levers` (BENCH_LEVERS) adds levers to either.
    """
    setups, levers = found(SETUPS), found(LEVERS)
    if wanted:
        names = [name.strip() for name in wanted.split(",") if name.strip()]
        unknown = [name for name in names if name not in setups and name not in levers]
        if unknown:
            raise SystemExit(f"bench: no setup or lever named {', '.join(unknown)}")
        chosen = [load(setups.get(name) or levers[name]) for name in names]
    else:
        chosen = [load(folder) for folder in setups.values()]
        if quick:
            chosen = [setup for setup in chosen if setup.quick]
    for name in (name.strip() for name in extra_levers.split(",") if name.strip()):
        if name not in levers:
            raise SystemExit(f"bench: no lever named {name}")
        chosen.append(load(levers[name]))
    chosen.sort(key=lambda setup: (setup.order, setup.name))

    images = {key: value for key, value in dotenv().items() if key.endswith("_IMAGE")}
    first_port = os.environ.get("BENCH_FIRST_PORT")
    run_id = uuid.uuid4().hex[:6]
    for number, setup in enumerate(chosen):
        # Compose v1 keeps only [a-z0-9] of a project name; v2 would keep more.
        setup.project = f"bench{re.sub('[^a-z0-9]', '', setup.name.lower())}{run_id}"
        setup.port = int(first_port) + number if first_port else free_port()
        # Each compose file names its published port differently; set both. The stack's
        # TLS port too: setups made from docker-compose.yml would otherwise all want 8443.
        ports = {
            "GATEWAY_PORT": str(setup.port),
            "BENCH_PORT": str(setup.port),
            "GATEWAY_TLS_PORT": str(free_port()),
        }
        setup.env = {**os.environ, **images, **setup.env, **ports}
    return chosen
