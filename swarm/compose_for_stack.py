"""Print docker-compose.yml as `docker stack deploy` accepts it (pipe it to `-c -`).

The stack loader (Compose file format 3) refuses keys that Compose itself needs: the
map form of `depends_on` (nginx waits for a healthy app), and the service-level limits
`cpus`, `mem_limit` and `pids_limit` (the one form Compose v1 and v2 both apply), which
Swarm reads from `deploy.resources.limits` instead: they are moved there, with the same
`${VAR:-default}` settings. It knows no `profiles` either, so the opt-in services are left
out. Everything else is kept; swarm/docker-compose.swarm.yml adds the Swarm settings.

With --configs, read-only bind mounts of the project's folders (nginx's ./nginx and its
certificate folder ./certs) become Swarm configs, one per file, and private keys (*.key)
Swarm secrets: a bind mount finds its files only on the node where they are, a config or
secret travels with the swarm to whichever node runs the task (the cluster of
`make cluster-up`, swarm/docker-compose.cluster.yml). The local CA's own key and serial
(scripts/tls-certs.sh) stay on this host.
"""

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

import yaml

REFUSED_BY_STACK_DEPLOY = ("depends_on",)
# Service-level limit -> its name under deploy.resources.limits.
LIMITS_FOR_SWARM = {"cpus": "cpus", "mem_limit": "memory", "pids_limit": "pids"}
# What scripts/tls-certs.sh keeps to sign the next certificate: nginx never needs them.
NEVER_SHIPPED = {"ca.key", "ca.srl"}
SETTING = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose_for_stack(compose):
    """Return the compose document as the stack loader takes it, limits moved to deploy."""
    # Services in a Compose profile (monitoring) are opt-in, and the stack loader knows
    # no profiles: leave them out rather than deploy them unasked.
    compose["services"] = {
        name: service for name, service in compose["services"].items() if "profiles" not in service
    }
    for service in compose["services"].values():
        for key in REFUSED_BY_STACK_DEPLOY:
            service.pop(key, None)
        limits = {
            swarm_name: service.pop(key)
            for key, swarm_name in LIMITS_FOR_SWARM.items()
            if key in service
        }
        if limits:
            resources = service.setdefault("deploy", {}).setdefault("resources", {})
            resources.setdefault("limits", {}).update(limits)
    return compose


def read_only_bind(volume, environ=os.environ):
    """(source, target) of a short-syntax read-only bind mount of a relative path, else None.

    `${VAR:-default}` in it is filled in from the environment, as the stack loader would.
    """
    if not isinstance(volume, str):
        return None
    volume = SETTING.sub(lambda m: environ.get(m[1]) or m[2], volume)
    parts = volume.split(":")
    if len(parts) == 3 and parts[2] == "ro" and parts[0].startswith("."):
        return parts[0], parts[1]
    return None


def binds_to_configs(compose, project):
    """Turn read-only bind mounts of project folders into one Swarm config per file.

    A config is immutable and a stack deploy refuses to change one in place, so each
    config's name carries a hash of its content: an edited file is a new config, and the
    service update that follows rolls it out like any other change.
    """
    configs = compose.setdefault("configs", {})
    secrets = compose.setdefault("secrets", {})
    for service_name, service in compose["services"].items():
        kept = []
        for volume in service.get("volumes", []):
            bind = read_only_bind(volume)
            source = (project / bind[0]).resolve() if bind else None
            if source is None or not source.is_dir():
                kept.append(volume)
                continue
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                if path.name in NEVER_SHIPPED:
                    continue
                relative = path.relative_to(source).as_posix()
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
                name = re.sub(r"[^A-Za-z0-9]+", "_", f"{service_name}_{relative}") + f"_{digest}"
                reference = {"source": name, "target": f"{bind[1]}/{relative}", "mode": 0o444}
                if path.suffix == ".key":
                    # Readable by the service's user only, as the key file on the host is.
                    uid, _, gid = str(service.get("user", "0")).partition(":")
                    reference.update(mode=0o400, uid=uid, gid=gid or uid)
                    secrets[name] = {"file": str(path)}
                    service.setdefault("secrets", []).append(reference)
                else:
                    configs[name] = {"file": str(path)}
                    service.setdefault("configs", []).append(reference)
        if kept:
            service["volumes"] = kept
        else:
            service.pop("volumes", None)
    for kind in ("configs", "secrets"):
        if not compose[kind]:
            compose.pop(kind)
    return compose


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compose_file", nargs="?", default="docker-compose.yml", type=Path)
    parser.add_argument(
        "--configs",
        action="store_true",
        help="turn read-only bind mounts of project folders into Swarm configs",
    )
    args = parser.parse_args()
    stack = compose_for_stack(yaml.safe_load(args.compose_file.read_text()))
    if args.configs:
        stack = binds_to_configs(stack, args.compose_file.resolve().parent)
    yaml.safe_dump(stack, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
