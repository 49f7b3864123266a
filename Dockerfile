# The gateway image, built in stages:
#   dependencies   the locked packages, in /opt/venv
#   test           that venv plus the test tools: the Python lint and the unit tests run
#                  in it, and a failure fails the build (`docker build --target test .`)
#   (the last)     what the replicas run: the venv without pip, the code, no test tools;
#                  plain `docker build .`, Compose, Swarm and Kubernetes all use it
# PYTHON_IMAGE defaults to the official image; on a host with no registry
# `make up` builds a Debian-based one first and names it in .env.
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

FROM base AS dependencies
# Dependencies first, so code changes rebuild in seconds. Only from the lock (make lock):
# every package pinned and checked against its hash, so a dependency the lock does not
# name fails the build instead of being resolved afresh.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir --disable-pip-version-check --require-hashes -r /tmp/requirements.txt

FROM dependencies AS test
# The host's test tools, from their lock (constrained to the app's versions), on top.
COPY requirements-dev.txt /tmp/requirements-dev.txt
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes -r /tmp/requirements-dev.txt
WORKDIR /app
COPY . .
# As the replicas run: uid 10001, so a test that needs root or a writable /app fails here.
# CI=true: a unit test that skips in this environment fails the build (tests/conftest.py).
USER 10001:10001
ENV CI=true HOME=/tmp
RUN ruff check --no-cache . \
 && ruff format --check --no-cache . \
 && python3 -m pytest -p no:cacheprovider tests/unit

FROM dependencies AS runtime-packages
# The replicas install nothing: pip stays behind in the build stages.
RUN pip uninstall --yes --quiet --disable-pip-version-check pip

FROM base
COPY --from=runtime-packages /opt/venv /opt/venv

WORKDIR /app
# The serving infrastructure, then your own code (service/: README, "Make it yours").
COPY gateway.py gateway_faults.py gateway_logging.py gateway_metrics.py gunicorn.conf.py healthcheck.py ./
COPY service/ service/

# A numeric, non-root user: it needs no passwd entry, so any base image works.
USER 10001:10001

EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python3", "healthcheck.py"]

# Exec form: gunicorn is PID 1 and receives SIGTERM itself.
CMD ["gunicorn", "--config", "gunicorn.conf.py", "gateway:create_app()"]
