"""Print docker-compose.yml as `docker stack deploy` accepts it (pipe it to `-c -`).

The stack loader (Compose file format 3) refuses two keys that Compose itself needs:
the map form of `depends_on` (nginx waits for a healthy app) and the service-level
`pids_limit`; it knows no `profiles` either, so the opt-in services are left out.
Everything else is kept; swarm/docker-compose.swarm.yml adds the Swarm
settings (the pids limit among them) on top.
"""

import sys
from pathlib import Path

import yaml

REFUSED_BY_STACK_DEPLOY = ("depends_on", "pids_limit")


def compose_for_stack(compose):
    """Return the compose document without the keys the stack loader refuses."""
    # Services in a Compose profile (monitoring) are opt-in, and the stack loader knows
    # no profiles: leave them out rather than deploy them unasked.
    compose["services"] = {
        name: service for name, service in compose["services"].items() if "profiles" not in service
    }
    for service in compose["services"].values():
        for key in REFUSED_BY_STACK_DEPLOY:
            service.pop(key, None)
    return compose


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml")
    yaml.safe_dump(compose_for_stack(yaml.safe_load(path.read_text())), sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
