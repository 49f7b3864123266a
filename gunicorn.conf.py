"""gunicorn settings for one gateway replica.

Every value comes from an environment variable with a default that works in the
Compose stack; .env.example documents them all.
"""

import gc
import os
import pathlib
import shutil
import time


def env(name, default):
    return os.environ.get(name, str(default))


#
# Server socket
#
# The port is fixed: nginx/nginx.conf.template and the healthcheck name it too.
bind = "0.0.0.0:8000"

#
# Worker processes
#
# Five replicas share two cores, so each replica runs one process; its concurrency
# comes from gevent's greenlets, which keep nginx's upstream connections open and
# served 24 % more requests/s than gthread's threads, measured side by side
# (docs/performance.md). GUNICORN_WORKER_CLASS=gthread (GUNICORN_THREADS each) suits
# handlers that compute for long or block in C code gevent cannot patch; it also takes
# 10 MiB less per replica (no gevent), at a higher p99.
workers = int(env("GUNICORN_WORKERS", 1))
worker_class = env("GUNICORN_WORKER_CLASS", "gevent")
threads = int(env("GUNICORN_THREADS", 4))
# An idle connection is closed after this many seconds. nginx closes its idle upstream
# connections after 4 s, first, so it never reuses one a replica is closing. Short,
# because a stopping gevent worker waits for every open connection, idle ones too.
keepalive = int(env("GUNICORN_KEEPALIVE", 5))
timeout = int(env("GUNICORN_TIMEOUT", 30))
# Must stay below Compose's stop_grace_period (30 s) minus the drain delay,
# or Docker SIGKILLs workers still finishing requests.
graceful_timeout = int(env("GUNICORN_GRACEFUL_TIMEOUT", 20))
# The heartbeat file must live on tmpfs: the root filesystem is read-only.
worker_tmp_dir = "/dev/shm"
# gunicorn 27's control socket would be created under $HOME, which a read-only,
# passwd-less container does not have; nothing here uses it.
control_socket_disable = True

#
# Garbage collection (a lever measured in `make bench`: bench/levers/gc-freeze)
#
# GUNICORN_GC_FREEZE=true moves everything the worker holds once the app is loaded
# (modules, the app, its routes) out of the collector's sight, so no collection walks it
# again; GUNICORN_GC_GEN0=N (0: Python's own threshold) collects the youngest objects
# less often. Both only change how often Python pauses to collect, never what is freed.
gc_freeze = env("GUNICORN_GC_FREEZE", "false").lower() == "true"
gc_gen0 = int(env("GUNICORN_GC_GEN0", 0))

#
# Development (make dev)
#
# Restart the worker when a Python file it loaded changes: with the source bind-mounted
# (docker-compose.dev.yml) an edit is served without rebuilding the image. gunicorn polls
# the files' modification times once a second (no inotify package in the image).
reload = env("GUNICORN_RELOAD", "false").lower() == "true"

#
# Logging
#
# On by default: the replica's line with the request id is how one request is followed
# from nginx into the replica (README, Observability). GUNICORN_ACCESS_LOG=false saves
# about a fifth of the replica's CPU per request in `make bench` (docs/performance.md);
# nginx still logs every request with its request_id and the replica's address.
accesslog = "-" if env("GUNICORN_ACCESS_LOG", "true").lower() == "true" else None
errorlog = "-"
loglevel = env("GUNICORN_LOG_LEVEL", "info")
# LOG_FORMAT=json (default): one JSON object per line, access and error lines alike
# (gateway_logging.py); LOG_FORMAT=text: gunicorn's own lines, with this access format.
logger_class = "gateway_logging.GunicornLogger"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}i)s'

#
# Metrics
#
# With several workers, each writes its Prometheus values to files in this folder and
# /metrics adds them up, so the numbers are the replica's whatever worker answers the
# scrape. With one worker (the default) the values stay in its memory: the files cost
# a system call and a lock per update, measured in `make bench`. On tmpfs: the root
# filesystem is read-only. Set here, before any worker imports the app and so
# prometheus_client, which reads it once, at import.
if workers > 1:
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/dev/shm/gateway-metrics")
metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
metrics_dir = pathlib.Path(metrics_dir) if metrics_dir else None

#
# Graceful shutdown
#
# On SIGTERM the replica first reports 503 on /readyz for GATEWAY_DRAIN_SECONDS
# while still serving, so a balancer that reads readiness (Kubernetes, a
# readiness-aware proxy) stops sending work before gunicorn closes its socket.
drain_seconds = float(env("GATEWAY_DRAIN_SECONDS", 2))
drain_flag = pathlib.Path(env("GATEWAY_DRAIN_FLAG", "/dev/shm/gateway-draining"))
# A replica starts healthy: a fault switched on before a restart (docs/faults.md) is gone.
fault_file = pathlib.Path(env("GATEWAY_FAULT_FILE", "/dev/shm/gateway-fault"))


def on_starting(server):
    drain_flag.unlink(missing_ok=True)
    fault_file.unlink(missing_ok=True)
    if metrics_dir:
        # Values left by an earlier run of this container must not be added to this one's.
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)


def child_exit(server, worker):
    if not metrics_dir:
        return
    # Imported here, not at the top: the master must not import prometheus_client
    # before PROMETHEUS_MULTIPROC_DIR is set, or the workers it forks inherit that.
    from prometheus_client import multiprocess

    # A dead worker's in-flight gauge must not count any more; its counters still do.
    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    # After the app is loaded in the worker (there is no --preload): freezing earlier
    # would leave the app's own objects to the collector.
    if gc_gen0:
        gc.set_threshold(gc_gen0, *gc.get_threshold()[1:])
    if gc_freeze:
        gc.freeze()


def worker_exit(server, worker):
    # The access lines of the last moments, still waiting for their batched write.
    worker.log.access_lines.flush()


def when_ready(server):
    graceful_stop = server.handle_term

    def drain_then_stop():
        server.log.info("SIGTERM: not ready, draining for %ss", drain_seconds)
        drain_flag.touch()
        time.sleep(drain_seconds)
        graceful_stop()

    server.handle_term = drain_then_stop
