# The gateway image: one Flask replica served by gunicorn.
# PYTHON_IMAGE defaults to the official image; on a host with no registry
# `make up` builds a Debian-based one first and names it in .env.
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Dependencies first, so code changes rebuild in seconds. Only from the lock (make lock):
# every package pinned and checked against its hash, so a dependency the lock does not
# name fails the build instead of being resolved afresh.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir --disable-pip-version-check --require-hashes -r /tmp/requirements.txt

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
