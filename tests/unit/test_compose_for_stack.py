"""swarm/compose_for_stack.py: the compose file as `docker stack deploy` accepts it."""

import copy
import importlib.util
import shutil
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


def test_only_the_refused_keys_are_dropped_and_limits_move_to_deploy():
    compose = load("docker-compose.yml")
    stack = compose_for_stack.compose_for_stack(copy.deepcopy(compose))
    moved = ("depends_on", "cpus", "mem_limit", "pids_limit", "deploy")
    for name, service in always_on(compose).items():
        kept = {k: v for k, v in service.items() if k not in moved}
        assert {k: v for k, v in stack["services"][name].items() if k != "deploy"} == kept


def test_swarm_gets_the_same_limits_as_compose():
    compose = load("docker-compose.yml")
    stack = compose_for_stack.compose_for_stack(copy.deepcopy(compose))
    for name, service in always_on(compose).items():
        limits = stack["services"][name]["deploy"]["resources"]["limits"]
        assert limits == {
            "cpus": service["cpus"],
            "memory": service["mem_limit"],
            "pids": service["pids_limit"],
        }, name
    # deploy.replicas stays where it was.
    assert (
        stack["services"]["app"]["deploy"]["replicas"]
        == compose["services"]["app"]["deploy"]["replicas"]
    )


def test_services_of_a_profile_are_left_out():
    compose = load("docker-compose.yml")
    assert set(always_on(compose)) < set(compose["services"]), "no profile left to test"
    stack = compose_for_stack.compose_for_stack(copy.deepcopy(compose))
    assert set(stack["services"]) == set(always_on(compose))


def test_configs_replace_the_nginx_bind_mounts_one_file_each(tmp_path, monkeypatch):
    # A project as `make up` leaves it: nginx's files, and the local CA's certificates.
    shutil.copytree(ROOT / "nginx", tmp_path / "nginx")
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("server.crt", "server.key", "ca.crt", "ca.key", "ca.srl"):
        (certs / name).write_text(name)
    monkeypatch.delenv("TLS_CERT_DIR", raising=False)
    stack = compose_for_stack.binds_to_configs(
        compose_for_stack.compose_for_stack(load("docker-compose.yml")), tmp_path
    )
    nginx = stack["services"]["nginx"]
    assert "volumes" not in nginx, f"bind mounts left: {nginx.get('volumes')}"
    targets = {config["target"]: config["source"] for config in nginx["configs"]}
    files = sorted(p for p in (tmp_path / "nginx").rglob("*") if p.is_file())
    expected = [f"/etc/nginx/gateway/{p.relative_to(tmp_path / 'nginx')}" for p in files]
    assert sorted(targets) == sorted(
        expected + ["/etc/nginx/tls/ca.crt", "/etc/nginx/tls/server.crt"]
    )
    for target, source in targets.items():
        assert Path(stack["configs"][source]["file"]).name == Path(target).name
    # A changed file is a new config (configs are immutable): the name carries a hash.
    assert len(set(targets.values())) == len(targets)
    # The private key is a secret only nginx's user reads; the CA's key never leaves the host.
    [key] = nginx["secrets"]
    assert key["target"] == "/etc/nginx/tls/server.key"
    assert (key["uid"], key["gid"], key["mode"]) == ("101", "101", 0o400)
    shipped = [entry["file"] for kind in ("configs", "secrets") for entry in stack[kind].values()]
    assert not [f for f in shipped if Path(f).name in ("ca.key", "ca.srl")]
    assert "configs" not in stack["services"]["app"]
