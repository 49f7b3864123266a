"""The seed blog's app, as it describes it: one /info endpoint with the host's details."""

import socket

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/info")
def info():
    hostname = socket.gethostname()
    return jsonify({"hostname": hostname, "ip_address": socket.gethostbyname(hostname)})
