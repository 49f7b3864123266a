#!/usr/bin/env bash
# Run the balance checker against the gateway in a Kubernetes cluster (make k8s-check):
# port-forward its nginx Service to 127.0.0.1:GATEWAY_PORT, then expect every ready app pod
# to answer. Needs a cluster in kubectl's current context and `make k8s-apply` first.
set -euo pipefail
cd "$(dirname "$0")/.."
namespace=${K8S_NAMESPACE:?set K8S_NAMESPACE, e.g. gateway-customer-a}
port=${GATEWAY_PORT:-8000}
balance_check=${BALANCE_CHECK:-.venv/bin/balance-check}

kubectl -n "$namespace" port-forward service/gateway "$port:80" >/dev/null &
forward=$!
trap 'kill "$forward"' EXIT
for _ in $(seq 30); do
  curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/nginx-healthz" && break
  sleep 1
done

# In Kubernetes a pod's hostname is its name, which /info reports.
ready=$(kubectl -n "$namespace" get deployment app -o jsonpath='{.status.readyReplicas}')
echo "k8s: $ready ready app pods in $namespace:"
kubectl -n "$namespace" get pods -l app.kubernetes.io/component=app -o name
"$balance_check" "http://127.0.0.1:$port/info" --expect-replicas "$ready"
