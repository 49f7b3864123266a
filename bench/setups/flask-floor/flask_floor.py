"""The Flask floor's app: the seed's minimal /info, plus the /healthz the stack's image asks.

The image's HEALTHCHECK (healthcheck.py) asks /healthz every 5 s; the seed app has only
/info, so without this route every replica would turn unhealthy.
"""

from seed_app import app


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
