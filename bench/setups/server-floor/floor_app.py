"""The server floor: a bare WSGI callable served exactly as the gateway is.

`make bench` runs it in the stack's own image, under the stack's gunicorn.conf.py and
behind the stack's nginx, in place of the Flask app. It does no work per request, so
no app on this server, Flask or not, can be faster through this stack: the gap between
it and the stack is what Flask and the app cost, the rest is gunicorn, nginx and Docker.
"""

import json
import socket

# Built once, at import: the replica's name lets `make bench` see that every replica
# answers, and costs nothing per request.
BODY = (json.dumps({"hostname": socket.gethostname(), "status": "ok"}) + "\n").encode()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
