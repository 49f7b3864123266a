"""Which pod may reach which, by each rendered overlay's NetworkPolicies.

No cluster (so no network plugin) runs here: the policies are read as the Kubernetes
NetworkPolicy API defines them (a pod no policy selects is open; a selected pod takes only
what one of its policies' rules allows, on both the sender's egress and the receiver's
ingress side) and asked about the pods of a cluster with two customers.
"""

from dataclasses import dataclass, field

import pytest
from test_manifests import OVERLAYS, find, render

pytestmark = pytest.mark.k8s


@dataclass
class Pod:
    namespace: str
    labels: dict
    # Named container ports, as a NetworkPolicy's `port: http` refers to them.
    ports: dict = field(default_factory=dict)


def matches(selector, labels):
    """A LabelSelector (matchLabels, matchExpressions) against a set of labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value, values = labels.get(expression["key"]), expression.get("values", [])
        if not {
            "In": value in values,
            "NotIn": value not in values,
            "Exists": expression["key"] in labels,
            "DoesNotExist": expression["key"] not in labels,
        }[expression["operator"]]:
            return False
    return True


def peer_matches(peer, policy_namespace, pod):
    if "ipBlock" in peer:
        return False  # addresses outside the cluster: no pod here is one
    namespace_labels = {"kubernetes.io/metadata.name": pod.namespace}
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return matches(peer.get("podSelector", {}), pod.labels)


def port_matches(rule_ports, target, port, protocol):
    for rule_port in rule_ports or [{}]:
        wanted = rule_port.get("port")
        if isinstance(wanted, str):
            wanted = target.ports.get(wanted)
        if rule_port.get("protocol", "TCP") == protocol and wanted in (None, port):
            return True
    return False


def side_allows(policies, direction, pod, peer, target, port, protocol):
    """Whether `pod`'s policies let traffic in `direction` with `peer` through."""
    kind, peers_key = {"Ingress": ("ingress", "from"), "Egress": ("egress", "to")}[direction]
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    return any(
        (not rule.get(peers_key) or any(
            peer_matches(p, policy["metadata"]["namespace"], peer) for p in rule[peers_key]
        ))
        and port_matches(rule.get("ports"), target, port, protocol)
        for policy in selecting
        for rule in policy["spec"].get(kind, [])
    )  # fmt: skip


def reachable(policies, source, target, port, protocol="TCP"):
    return side_allows(policies, "Egress", source, target, target, port, protocol) and side_allows(
        policies, "Ingress", target, source, target, port, protocol
    )


def deployment_pod(documents, name, namespace=None):
    template = find(documents, "Deployment", name)["spec"]["template"]
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    namespace = namespace or find(documents, "Deployment", name)["metadata"]["namespace"]
    return Pod(namespace, template["metadata"]["labels"], ports)


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.name)
def cluster(request):
    """The overlay's pods and policies, and another customer's pods, the DNS, the controller."""
    documents = render(request.param)
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    (controller_namespace,) = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in find(documents, "NetworkPolicy", "nginx")["spec"]["ingress"][0]["from"]
    }
    pods = {
        "nginx": deployment_pod(documents, "nginx"),
        "app": deployment_pod(documents, "app"),
        "other customer's nginx": deployment_pod(documents, "nginx", "gateway-someone-else"),
        "other customer's app": deployment_pod(documents, "app", "gateway-someone-else"),
        "any pod in the namespace": Pod(pods_namespace(documents), {"run": "debug"}),
        "ingress controller": Pod(
            controller_namespace, {"app.kubernetes.io/name": "ingress-nginx"}
        ),
        "a controller elsewhere": Pod("kube-system", {"app.kubernetes.io/name": "ingress-nginx"}),
        "cluster DNS": Pod("kube-system", {"k8s-app": "kube-dns"}, {"dns": 53}),
    }
    # The other customer's pods are governed by the same policies in their own namespace.
    for policy in list(policies):
        policies.append(
            {**policy, "metadata": {**policy["metadata"], "namespace": "gateway-someone-else"}}
        )
    return policies, pods


def pods_namespace(documents):
    return find(documents, "Deployment", "app")["metadata"]["namespace"]


# (from, to, port, protocol): may it connect? The picture in docs/beyond-one-machine.md.
EXPECTED = [
    ("ingress controller", "nginx", 8080, "TCP", True),
    ("ingress controller", "nginx", 8443, "TCP", True),
    ("ingress controller", "app", 8000, "TCP", False),
    ("a controller elsewhere", "nginx", 8080, "TCP", False),
    ("nginx", "app", 8000, "TCP", True),
    ("nginx", "app", 9000, "TCP", False),
    ("nginx", "cluster DNS", 53, "UDP", True),
    ("nginx", "cluster DNS", 53, "TCP", True),
    ("app", "cluster DNS", 53, "UDP", True),
    ("app", "nginx", 8080, "TCP", False),
    ("app", "app", 8000, "TCP", False),
    ("any pod in the namespace", "app", 8000, "TCP", False),
    ("any pod in the namespace", "nginx", 8080, "TCP", False),
    ("other customer's nginx", "app", 8000, "TCP", False),
    ("other customer's app", "nginx", 8080, "TCP", False),
    ("nginx", "other customer's app", 8000, "TCP", False),
    ("other customer's nginx", "other customer's app", 8000, "TCP", True),
]


@pytest.mark.parametrize(
    "source, target, port, protocol, expected",
    EXPECTED,
    ids=[f"{s} -> {t}:{p}/{proto}" for s, t, p, proto, _ in EXPECTED],
)
def test_who_may_reach_whom(cluster, source, target, port, protocol, expected):
    policies, pods = cluster
    assert reachable(policies, pods[source], pods[target], port, protocol) is expected


def test_without_the_policies_everything_reaches_everything(cluster):
    """The check itself can fail: with no policy every pair in the table is open."""
    _, pods = cluster
    for source, target, port, protocol, _ in EXPECTED:
        assert reachable([], pods[source], pods[target], port, protocol)


def test_every_pod_in_the_namespace_is_denied_by_default():
    for overlay in OVERLAYS:
        documents = render(overlay)
        deny = find(documents, "NetworkPolicy", "default-deny")["spec"]
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny and "egress" not in deny


def test_an_overlay_names_its_own_ingress_controller_namespace():
    namespaces = {}
    for overlay in OVERLAYS:
        (peer,) = find(render(overlay), "NetworkPolicy", "nginx")["spec"]["ingress"][0]["from"]
        namespaces[overlay.name] = peer["namespaceSelector"]["matchLabels"]
    assert namespaces == {
        "customer-a": {"kubernetes.io/metadata.name": "ingress-nginx"},
        "customer-b": {"kubernetes.io/metadata.name": "ingress-system"},
    }
