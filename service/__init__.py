"""Your service's own routes: add them here, or in modules of this package.

gateway.create_app() registers `blueprint` on every replica, so a route you add is served
behind nginx with everything gateway.py gives each request (metrics, the request id, an
access line, `X-Served-By`, JSON errors) and gateway.py needs no edit. For example:

    @blueprint.get("/hello")
    def hello():
        return {"hello": "world"}

The whole folder goes into the image (Dockerfile); its dependencies go in requirements.in,
then `make lock`. README, "Make it yours".
"""

from flask import Blueprint

blueprint = Blueprint("service", __name__)
