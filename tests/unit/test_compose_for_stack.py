"""swarm/compose_for_stack.py: the compose file as `docker stack deploy` accepts it."""

import copy
import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "compose_for_stack", ROOT / "swarm/compose_for_stack.py"
)
compose_for_stack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compose_for_stack)


def load(path):
    return yaml.safe_load((ROOT / path).read_text())


def always_on(compose):
    """The services plain `up` starts: those in no profile."""
    return {name: s for name, s in compose["services"].items() if "profiles" not in s}


def test_only_the_refused_keys_are_dropped():
    compose = load("docker-compose.yml")
    stack = compose_for_stack.compose_for_stack(copy.deepcopy(compose))
    for name, service in always_on(compose).items():
        kept = {k: v for k, v in service.items() if k not in ("depends_on", "pids_limit")}
        assert stack["services"][name] == kept


def test_swarm_override_keeps_the_compose_pids_limits():
    compose = load("docker-compose.yml")
    override = load("swarm/docker-compose.swarm.yml")
    for name, service in always_on(compose).items():
        swarm_limits = override["services"][name]["deploy"]["resources"]["limits"]
        assert swarm_limits["pids"] == service["pids_limit"], name


def test_services_of_a_profile_are_left_out():
    compose = load("docker-compose.yml")
    assert set(always_on(compose)) < set(compose["services"]), "no profile left to test"
    stack = compose_for_stack.compose_for_stack(copy.deepcopy(compose))
    assert set(stack["services"]) == set(always_on(compose))
