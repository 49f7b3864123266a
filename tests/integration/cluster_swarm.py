"""The Swarm's managers as one: each call goes to a manager that answers.

A lost node's engine is gone (its socket refuses), and during an election every manager
answers "The swarm does not have a leader" (HTTP 503): the call moves on to the next manager
and is retried until one answers or the deadline passes.
"""

import socket
import time

import docker
import requests


class Managers:
    """Docker SDK clients of every manager, asked in turn until one answers."""

    def __init__(self, sockets, timeout=20):
        self.sockets = sockets
        self.clients = {
            name: docker.DockerClient(base_url=url, timeout=timeout)
            for name, url in sockets.items()
        }

    def call(self, action, deadline_seconds=120):
        """action(client) on the first manager that answers; retried while none does."""
        deadline = time.monotonic() + deadline_seconds
        while True:
            for name, client in self.clients.items():
                if not engine_listens(self.sockets[name]):
                    last = f"{name}'s engine does not listen"
                    continue
                try:
                    return action(client)
                except docker.errors.APIError as error:
                    # 503: no leader; other server errors: this manager is not one (yet).
                    if not error.is_server_error():
                        raise
                    last = error
                except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
                    last = error
            if time.monotonic() > deadline:
                raise TimeoutError(f"no manager answered in {deadline_seconds} s: {last}")
            time.sleep(0.5)

    def tasks(self, service):
        return self.call(lambda client: client.api.tasks(filters={"service": service}))

    def nodes(self):
        """Every node's attributes, as a manager reports them."""
        return self.call(lambda client: [node.attrs for node in client.nodes.list()])

    def leader(self):
        """The hostname of the Raft leader (gwc-n1), or None while there is none."""
        for node in self.nodes():
            if node.get("ManagerStatus", {}).get("Leader"):
                return node["Description"]["Hostname"]
        return None

    def close(self):
        for client in self.clients.values():
            client.close()


def engine_listens(url):
    """Whether an engine listens on this unix:// socket. Probed with a socket of our own:
    the docker SDK leaves its socket open when the connection is refused."""
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(2)
        try:
            probe.connect(url.removeprefix("unix://"))
        except OSError:
            return False
    return True
