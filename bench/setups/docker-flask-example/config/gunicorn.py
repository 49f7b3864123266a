# nickjj/docker-flask-example's config/gunicorn.py: every value from the environment,
# sync workers (gunicorn's default class), WEB_CONCURRENCY or 2 x CPUs of them.
import multiprocessing
import os
from distutils.util import strtobool

bind = f"0.0.0.0:{os.getenv('PORT', '8000')}"
accesslog = "-"
access_log_format = "%(h)s %(l)s %(u)s %(t)s '%(r)s' %(s)s %(b)s '%(f)s' '%(a)s' in %(D)sµs"

workers = int(os.getenv("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
threads = int(os.getenv("PYTHON_MAX_THREADS", 1))

reload = bool(strtobool(os.getenv("WEB_RELOAD", "false")))

# Their .env.example documents WEB_TIMEOUT (default 120 s) for this file.
timeout = int(os.getenv("WEB_TIMEOUT", 120))
