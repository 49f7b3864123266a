"""gunicorn.conf.py's garbage-collection settings reach the worker's collector."""

import gc
import importlib.util
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def load_config(monkeypatch, **settings):
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("gunicorn_conf", CONFIG)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gc_freeze_and_threshold_are_applied_after_the_app_is_loaded(monkeypatch):
    threshold = gc.get_threshold()
    config = load_config(monkeypatch, GUNICORN_GC_FREEZE="true", GUNICORN_GC_GEN0="50000")
    try:
        config.post_worker_init(worker=None)
        assert gc.get_threshold() == (50000, *threshold[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_by_default_the_collector_is_left_as_python_sets_it(monkeypatch):
    threshold = gc.get_threshold()
    monkeypatch.delenv("GUNICORN_GC_FREEZE", raising=False)
    monkeypatch.delenv("GUNICORN_GC_GEN0", raising=False)
    load_config(monkeypatch).post_worker_init(worker=None)
    assert gc.get_threshold() == threshold
    assert gc.get_freeze_count() == 0
