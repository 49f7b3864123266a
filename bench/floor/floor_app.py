"""The server floor: a bare WSGI callable served exactly as the gateway is.

`make bench` runs it in the stack's own image, under the stack's gunicorn.conf.py and
behind the stack's nginx, in place of the Flask app. It does no work per request, so
no app on this server, Flask or not, can be faster through this stack: the gap between
it and the stack is what Flask and the app cost, the rest is gunicorn, nginx and Docker.
"""

BODY = b'{"hostname":"floor","status":"ok"}\n'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
