"""Every setup and lever folder under bench/ is one `make bench` can load and start."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import discover  # noqa: E402 - bench/ is not a package; run.py imports it the same way

FOLDERS = sorted(path.parent for path in BENCH.glob("*/*/setup.toml"))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda folder: folder.name)
def test_setup_folder_loads_and_names_existing_files(folder):
    setup = discover.load(folder)
    assert setup.label and setup.source
    assert (folder / "README.md").exists()
    assert all(file.exists() for file in setup.files)
    assert setup.services and (not setup.app_service or setup.app_service in setup.services)


def test_the_default_run_measures_every_setup_and_no_lever(monkeypatch):
    monkeypatch.delenv("BENCH_FIRST_PORT", raising=False)
    chosen = discover.choose(quick=False)
    assert {setup.name for setup in chosen} == set(discover.found(discover.SETUPS))
    assert all(s.project.startswith("bench") and s.project == s.project.lower() for s in chosen)
    assert len({setup.port for setup in chosen}) == len(chosen)


def test_quick_mode_is_the_stack_the_flask_floor_the_seed_and_the_proxy_floor():
    assert {setup.name for setup in discover.choose(quick=True)} == {
        "stack",
        "flask-floor",
        "baseline",
        "proxy-floor",
    }


def test_levers_named_in_bench_levers_join_the_default_setups():
    chosen = {setup.name for setup in discover.choose(False, "", "gc-freeze,cpuset")}
    assert chosen == set(discover.found(discover.SETUPS)) | {"gc-freeze", "cpuset"}
    with pytest.raises(SystemExit, match="no lever named stack"):
        discover.choose(False, "", "stack")
