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
PRIVATE_RANGES = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"

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
    upstream = nginx_environment(rendered)["NGINX_UPSTREAM"]
    assert upstream == "app-pods.$(POD_NAMESPACE).svc.cluster.local:8000"


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


def nginx_environment(documents):
    """The nginx container's settings: its ConfigMap's, then its own env (unexpanded)."""
    (container,) = find(documents, "Deployment", "nginx")["spec"]["template"]["spec"]["containers"]
    (source,) = container["envFrom"]
    settings = dict(find(documents, "ConfigMap", source["configMapRef"]["name"])["data"])
    settings.update({v["name"]: v.get("value") for v in container["env"]})
    return settings


def start_sh_default(setting):
    """The default nginx/start.sh gives a setting (`: "${NAME:=default}"`)."""
    text = (ROOT / "nginx/start.sh").read_text()
    return re.search(rf'^: "\$\{{{setting}:=([^}}]*)\}}"$', text, re.MULTILINE).group(1)


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
    # The template's TLS server, with the Secret's file names and the Service's port.
    settings = nginx_environment(rendered)
    assert (settings["TLS_CERT_FILE"], settings["TLS_KEY_FILE"]) == ("tls.crt", "tls.key")
    assert settings["GATEWAY_TLS_PORT"] == "443"


def test_limits_are_the_compose_defaults_and_proxies_are_trusted_only_when_listed(rendered):
    settings = nginx_environment(rendered)
    for setting in ("CONNECTIONS_PER_CLIENT", "RATE_LIMIT_PER_SECOND", "NGINX_READ_TIMEOUT"):
        assert settings.get(setting, start_sh_default(setting)) == compose_default(setting)
    namespace = find(rendered, "Deployment", "nginx")["metadata"]["namespace"]
    # The base trusts the pod networks (only the ingress controller may connect);
    # customer-b's overlay narrows it to its cluster's.
    expected = "10.0.0.0/8" if namespace.endswith("customer-b") else PRIVATE_RANGES
    assert settings["TRUSTED_PROXIES"] == expected


def test_nginx_is_configured_by_settings_not_by_a_copy_of_its_configuration(rendered):
    """One source: the image carries nginx/; no ConfigMap holds an nginx configuration."""
    for document in (d for d in rendered if d["kind"] == "ConfigMap"):
        for key, value in document["data"].items():
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", key), (document["metadata"]["name"], key)
            assert "\n" not in value and ";" not in value, key
    (container,) = find(rendered, "Deployment", "nginx")["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("flask-gateway-nginx:")
    assert "command" not in container and "args" not in container
    # Every setting it is given is one start.sh reads.
    start_sh = (ROOT / "nginx/start.sh").read_text()
    for setting in nginx_environment(rendered):
        if setting != "POD_NAMESPACE":
            assert f"${{{setting}" in start_sh, setting


def test_nginx_runs_as_a_high_uid_with_its_files_in_the_image(rendered):
    pod = find(rendered, "Deployment", "nginx")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["runAsGroup"] >= 10000
    dockerfile = (ROOT / "k8s/nginx.Dockerfile").read_text()
    assert f"USER {pod['securityContext']['runAsUser']}:" in dockerfile
    # Only emptyDir (/tmp) and the TLS Secret are mounted: the rest is the image's.
    (container,) = pod["containers"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/etc/nginx/tls"}


def test_the_ingress_sends_everything_to_the_nginx_front(rendered):
    paths = find(rendered, "Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"]
    backends = [p["backend"]["service"] for p in paths]
    assert backends == [{"name": "gateway", "port": {"name": "http"}}]
