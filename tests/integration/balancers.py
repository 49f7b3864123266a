"""Real balancers no one here wrote, on 127.0.0.1, for the balance-check tests: HAProxy
(Debian's, run by the test) and nginx (the project's base image, on the host's network),
over small backends that name themselves. `make balancer-tools` installs HAProxy."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
from conftest import free_port

NGINX_IMAGE = "gateway-base/nginx:1.30-sid"


def wait_for_ports(ports, process=None, timeout=30):
    """Return once every port on 127.0.0.1 accepts a connection."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the balancer exited ({process.returncode}) before listening")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
            time.sleep(0.1)


def self_signed_certificate(folder):
    """A certificate for 127.0.0.1 (its own CA) and its key, as one PEM; returns (pem, crt)."""
    key, crt, pem = folder / "server.key", folder / "server.crt", folder / "server.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(crt), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    pem.write_text(crt.read_text() + key.read_text())
    return pem, crt


def backend_frontends(names, ports, tls_pem=None):
    """HAProxy frontends that answer like replicas: JSON naming themselves, X-Served-By too.

    With `tls_pem`, they speak TLS with ALPN h2 (HTTP/2 end to end, as a gRPC server does).
    """
    tls = f" ssl crt {tls_pem} alpn h2,http/1.1" if tls_pem else ""
    return "".join(
        f"""
frontend {name}
    bind 127.0.0.1:{port}{tls}
    http-request return status 200 content-type application/json """
        f"""string "{{\\"hostname\\":\\"{name}\\"}}" hdr X-Served-By {name}
"""
        for name, port in zip(names, ports, strict=True)
    )


HAPROXY_DEFAULTS = """
global
    stats socket {socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
"""


class HAProxy:
    """One haproxy process with this configuration (its `{socket}` filled in), on 127.0.0.1."""

    def __init__(self, folder, config, ports):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket = self.folder / "haproxy.sock"
        self.path = self.folder / "haproxy.cfg"
        self.path.write_text(HAPROXY_DEFAULTS.format(socket=self.socket) + config)
        self.ports = ports

    def __enter__(self):
        # -db: stay in the foreground, so the test owns the process and ends it.
        self.log = self.folder / "haproxy.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(self.path)], stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_for_ports(self.ports, self.process)
        except Exception:
            self.__exit__()
            print(self.log.read_text())
            raise
        return self

    def __exit__(self, *exc_info):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def command(self, line):
        """Send one command to the runtime API (the stats socket); return its answer."""
        with socket.socket(socket.AF_UNIX) as api:
            api.connect(str(self.socket))
            api.sendall(line.encode() + b"\n")
            return api.makefile().read()

    def requests(self, backend):
        """How many HTTP requests `backend` has taken so far (`req_tot` in `show stat`)."""
        header, *rows = self.command("show stat").lstrip("# ").splitlines()
        columns = header.split(",")
        for row in rows:
            values = dict(zip(columns, row.split(","), strict=False))
            if values.get("pxname") == backend and values.get("svname") == "BACKEND":
                return int(values["req_tot"])
        raise KeyError(f"no backend {backend} in show stat")


class Nginx:
    """nginx from the project's base image, on the host's network, with this nginx.conf."""

    def __init__(self, folder, config, ports):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "nginx.conf").write_text(config)
        self.ports = ports

    def __enter__(self):
        self.client = docker.from_env()
        self.container = self.client.containers.run(
            NGINX_IMAGE,
            ["nginx", "-c", "/balancer/nginx.conf", "-g", "daemon off;"],
            detach=True,
            network_mode="host",
            volumes={str(self.folder): {"bind": "/balancer", "mode": "ro"}},
            labels={"flask-gateway.test": "balance-check"},
        )
        try:
            wait_for_ports(self.ports)
        except Exception:
            print(self.container.logs().decode())
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info):
        self.container.remove(force=True)
        self.client.close()


def nginx_config(upstreams, servers):
    """An nginx.conf: `upstreams` {name: body}, `servers` {port: (upstream, extra lines)}."""
    blocks = "".join(f"    upstream {name} {{ {body} }}\n" for name, body in upstreams.items())
    listens = "".join(
        f"    server {{ listen 127.0.0.1:{port}; {extra} "
        f"location / {{ proxy_pass http://{upstream}; }} }}\n"
        for port, (upstream, extra) in servers.items()
    )
    # Temporary files under /tmp: the image's own folders need not be writable.
    return f"""
worker_processes 1;
pid /tmp/nginx-balance-check.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path /tmp/nginx-body;
    proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fastcgi;
    uwsgi_temp_path /tmp/nginx-uwsgi;
    scgi_temp_path /tmp/nginx-scgi;
{blocks}{listens}}}
"""


def ports(count):
    """`count` free ports on 127.0.0.1."""
    return [free_port() for _ in range(count)]


def balance_check(*args, timeout=180):
    """Run the balance-check command as a user does (no CA from this test session)."""
    env = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    return subprocess.run(
        [sys.executable, "-m", "balance_check", *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "100"},
        timeout=timeout,
        check=False,
    )
