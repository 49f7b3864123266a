"""The Kubernetes manifests: every overlay renders with kustomize and validates against the
schemas of a current Kubernetes release; the settings the README promises are there."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.parent for p in (ROOT / "k8s/overlays").glob("*/kustomization.yaml"))
# The newest release whose schemas the pinned kubernetes-validate ships.
KUBERNETES_VERSION = "1.37.0"
APP_PODS = {"app.kubernetes.io/name": "flask-gateway", "app.kubernetes.io/component": "app"}

pytestmark = pytest.mark.k8s


def render(overlay):
    """Render an overlay with kubectl's kustomize: its documents, as dicts."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        message = "kubectl (with kustomize v5) is missing: `make k8s-tools` installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [kubectl, "kustomize", str(overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(documents, kind, name):
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}"
    return matches[0]


@pytest.fixture(params=OVERLAYS, ids=lambda p: p.name)
def rendered(request):
    """Every document of one rendered overlay."""
    return render(request.param)


def test_there_are_overlays():
    assert len(OVERLAYS) >= 2, OVERLAYS


def test_every_document_validates_against_kubernetes_schemas(rendered):
    for document in rendered:
        # strict: a misspelt or misplaced field is an error, not silently dropped.
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field(rendered):
    deployment = find(rendered, "Deployment", "app")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_app_runs_five_replicas_with_probes_and_resources(rendered):
    spec = find(rendered, "Deployment", "app")["spec"]
    assert spec["replicas"] == 5
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = spec["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_every_pod_is_restricted(rendered):
    for deployment in (d for d in rendered if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            assert container["resources"]["limits"], container["name"]


def test_replicas_spread_over_nodes(rendered):
    pod = find(rendered, "Deployment", "app")["spec"]["template"]["spec"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == APP_PODS


def test_autoscaler_keeps_at_least_five_and_scales_on_cpu(rendered):
    spec = find(rendered, "HorizontalPodAutoscaler", "app")["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"}
    assert spec["minReplicas"] == 5 < spec["maxReplicas"]
    assert [m["resource"]["name"] for m in spec["metrics"]] == ["cpu"]


def test_disruption_budget_and_services_select_the_app_pods(rendered):
    pod_labels = find(rendered, "Deployment", "app")["spec"]["template"]["metadata"]["labels"]
    assert find(rendered, "PodDisruptionBudget", "app")["spec"]["selector"]["matchLabels"] == (
        APP_PODS
    )
    for name in ("app", "app-pods"):
        assert find(rendered, "Service", name)["spec"]["selector"].items() <= pod_labels.items()
    # nginx balances over the headless Service's per-pod addresses.
    assert find(rendered, "Service", "app-pods")["spec"]["clusterIP"] == "None"
    nginx_conf = next(
        d["data"]["nginx.conf"]
        for d in rendered
        if d["kind"] == "ConfigMap" and "nginx.conf" in d.get("data", {})
    )
    assert "server app-pods.${POD_NAMESPACE}.svc.cluster.local:8000 resolve" in nginx_conf


def test_each_overlay_has_its_own_namespace_and_message():
    settings = {}
    for overlay in OVERLAYS:
        documents = render(overlay)
        namespaces = {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"}
        (namespace,) = namespaces
        assert find(documents, "Namespace", namespace)
        env_from = find(documents, "Deployment", "app")["spec"]["template"]["spec"]
        (source,) = env_from["containers"][0]["envFrom"]
        config = find(documents, "ConfigMap", source["configMapRef"]["name"])["data"]
        settings[namespace] = config["GATEWAY_MESSAGE"]
    assert all(settings.values()), settings
    assert len(set(settings)) == len(set(settings.values())) == len(OVERLAYS), settings


def nginx_files(documents):
    """The nginx ConfigMap's files: nginx.conf and edge.conf."""
    return next(
        d["data"]
        for d in documents
        if d["kind"] == "ConfigMap" and "nginx.conf" in d.get("data", {})
    )


def compose_default(setting):
    """The default docker-compose.yml gives a setting (`${NAME:-default}`)."""
    text = (ROOT / "docker-compose.yml").read_text()
    return re.search(rf"\$\{{{setting}:-([^}}]*)\}}", text).group(1)


def test_ingress_serves_tls_for_every_host_it_routes(rendered):
    ingress = find(rendered, "Ingress", "gateway")["spec"]
    hosts = {rule["host"] for rule in ingress["rules"]}
    (tls,) = ingress["tls"]
    assert set(tls["hosts"]) == hosts
    assert tls["secretName"] == "gateway-tls"


def test_nginx_serves_https_and_http2_from_the_tls_secret(rendered):
    pod = find(rendered, "Deployment", "nginx")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "https", "containerPort": 8443} in container["ports"]
    (tls_volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert tls_volume["secret"]["secretName"] == "gateway-tls"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == tls_volume["name"]]
    # A folder, so a renewed Secret is seen; subPath mounts are never updated.
    assert mount["mountPath"] == "/etc/nginx/tls" and "subPath" not in mount
    service_ports = find(rendered, "Service", "gateway")["spec"]["ports"]
    assert {"name": "https", "port": 443, "targetPort": "https"} in service_ports
    conf = nginx_files(rendered)["nginx.conf"]
    for directive in (
        "listen 8443 ssl;",
        "http2 on;",
        "ssl_protocols TLSv1.2 TLSv1.3;",
        "ssl_certificate /etc/nginx/tls/tls.crt;",
        "ssl_session_tickets off;",
    ):
        assert directive in conf, directive


def test_limits_are_the_compose_defaults_and_proxies_are_trusted_only_when_listed(rendered):
    files = nginx_files(rendered)
    assert "include /etc/nginx/gateway/edge.conf;" in files["nginx.conf"]
    edge = [line for line in files["edge.conf"].splitlines() if not line.startswith("#")]
    limit = compose_default("CONNECTIONS_PER_CLIENT")
    assert f"limit_conn conn_per_client {limit};" in edge
    annotations = find(rendered, "Ingress", "gateway")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/limit-connections"] == limit
    # No rate limit, as RATE_LIMIT_PER_SECOND=0 in Compose.
    assert compose_default("RATE_LIMIT_PER_SECOND") == "0"
    assert not [line for line in edge if line.startswith("limit_req")]
    trusted = [line for line in edge if line.startswith("set_real_ip_from")]
    namespace = find(rendered, "Deployment", "nginx")["metadata"]["namespace"]
    # The base trusts no one; customer-b's overlay trusts its load balancer's range.
    expected = ["set_real_ip_from 10.0.0.0/8;"] if namespace.endswith("customer-b") else []
    assert trusted == expected
