"""Check that setups work, without measuring them: `make bench-check`.

Each setup (all of bench/setups/, or BENCH_SETUPS) is built, started under its own
project, asked for /info through its front until every replica the Docker engine reports
has answered, and removed again, one at a time. No load: it needs no quiet machine.
"""

import os
import sys

import docker

import discover
import measure
import present

console = present.console


def check(client, setup):
    """'ok' or what is wrong with one setup, which is removed again either way."""
    try:
        setup.compose("build")
        up_seconds = measure.start(client, setup, console.log)
        if not setup.app_service:
            return f"ok: answers in {present.seconds(up_seconds)} s (no replicas)"
        answered, expected = measure.replicas_answering(client, setup)
        verdict = "ok" if answered == expected and expected else "FAILED"
        ready = present.seconds(up_seconds)
        return f"{verdict}: {answered}/{expected} replicas answered /info, up in {ready} s"
    except Exception as error:  # noqa: BLE001 - report it and check the next setup
        return f"FAILED: {error}"
    finally:
        setup.compose("down", "--volumes", "--remove-orphans", "--timeout", "10")
        left = measure.containers(client, setup)
        if left:
            console.print(f"[red]{setup.project}: {len(left)} container(s) left behind")


def main():
    client = docker.from_env()
    failed = 0
    chosen = discover.choose(
        False, os.environ.get("BENCH_SETUPS", ""), os.environ.get("BENCH_LEVERS", "")
    )
    for setup in chosen:
        with console.status(f"checking {setup.label} ({setup.project})"):
            verdict = check(client, setup)
        failed += not verdict.startswith("ok")
        console.print(f"{setup.label}: {verdict}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
