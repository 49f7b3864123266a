# The one entry point: `make` lists the targets. CI (.ci/run) calls the same ones.
SHELL := /bin/bash
COMPOSE ?= docker-compose
VENV ?= .venv
PYTHON ?= python3
export COMPOSE

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

base-images: ## Pull the base images, or build them from Debian when no registry answers
	scripts/base-images.sh

up: base-images ## Build, start the stack and return when every container is healthy
	$(COMPOSE) build
	$(COMPOSE) up -d --remove-orphans
	scripts/wait-healthy.sh

down: ## Stop the stack and remove its containers and network
	$(COMPOSE) down --remove-orphans

ps: ## Show the stack's containers and their health
	$(COMPOSE) ps

logs: ## Follow the logs of every container
	$(COMPOSE) logs -f --tail=50

reload: ## Re-render nginx's config from nginx/ and reload it without dropping requests
	$(COMPOSE) exec -T nginx /bin/sh /etc/nginx/gateway/start.sh reload

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

venv: $(VENV)/.installed ## Install the test and tool dependencies into .venv

test: venv base-images k8s-tools browser ## Run every test: unit, then integration against a stack of its own
	$(VENV)/bin/pytest

unit: venv ## Run the tests that need nothing but Python
	$(VENV)/bin/pytest tests/unit

lint: venv ## Lint the Python, the nginx config and the compose file (also as a Swarm stack)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(COMPOSE) config -q
	$(VENV)/bin/python swarm/compose_for_stack.py | docker stack config -c - -c swarm/docker-compose.swarm.yml >/dev/null

.PHONY: help base-images up down ps logs reload venv test unit lint

# --- Beyond one machine: Docker Swarm and Kubernetes (README "Beyond one machine") ---
STACK ?= gateway
K8S_OVERLAY ?= k8s/overlays/customer-a
K8S_NAMESPACE ?= gateway-$(notdir $(K8S_OVERLAY))
# The newest Kubernetes release whose schemas the pinned kubernetes-validate ships.
KUBERNETES_VERSION ?= 1.37.0
export STACK K8S_NAMESPACE

swarm-up: venv base-images ## Deploy the stack on Docker Swarm (makes a single-node swarm if none)
	PYTHON=$(VENV)/bin/python scripts/swarm.sh up

swarm-down: ## Remove the Swarm stack (and leave the swarm if swarm-up made it)
	scripts/swarm.sh down

swarm-test: venv base-images ## Only the Swarm tests: deploy, every task answers, update under load
	$(VENV)/bin/pytest -m swarm tests/integration

k8s-tools: ## Make sure kubectl with kustomize v5 is here (apt-get install kubectl if missing)
	@command -v kubectl >/dev/null || { apt-get update -q && apt-get install -y -q kubectl; }
	@kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5' || \
	  { echo "k8s: kubectl >= 1.27 (kustomize v5) is needed to render k8s/" >&2; exit 1; }

k8s-validate: venv k8s-tools ## Render every k8s overlay and validate it against Kubernetes' schemas
	mkdir -p artifacts/k8s
	for overlay in k8s/overlays/*/; do \
	  rendered=artifacts/k8s/$$(basename $$overlay).yaml; \
	  kubectl kustomize $$overlay >$$rendered || exit 1; \
	  $(VENV)/bin/kubernetes-validate --strict --quiet -k $(KUBERNETES_VERSION) $$rendered || exit 1; \
	  echo "k8s: $$rendered valid for Kubernetes $(KUBERNETES_VERSION)"; \
	done
	$(VENV)/bin/pytest -q tests/k8s

k8s-apply: k8s-tools ## Apply K8S_OVERLAY to your kubectl context's cluster, wait for the rollout
	kubectl apply -k $(K8S_OVERLAY)
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/app --timeout=5m
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/nginx --timeout=5m

k8s-check: venv k8s-tools ## Port-forward the cluster's gateway to GATEWAY_PORT and run balance-check
	scripts/k8s-check.sh

k8s-delete: k8s-tools ## Delete what k8s-apply made
	kubectl delete -k $(K8S_OVERLAY)

.PHONY: swarm-up swarm-down swarm-test k8s-tools k8s-validate k8s-apply k8s-check k8s-delete

# --- Benchmark: the stack against the seed's baseline, nginx's ceiling, one replica ---
# apt-get needs root; sudo when not.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo)

bench-tools: ## Install the load generator (wrk, from Debian's packages) when missing
	@command -v wrk >/dev/null || { $(AS_ROOT) apt-get update -q && $(AS_ROOT) apt-get install -y -q wrk; }

bench: venv base-images bench-tools ## Measure all five setups side by side (~13 min); writes bench/results/
	$(VENV)/bin/python bench/run.py

# make test runs a short smoke of make bench (tests/integration/test_bench.py), which needs wrk.
test: bench-tools

.PHONY: bench bench-tools

# The balance checker and the page's browser test.
CHROMIUM ?= chromium

check: venv ## Check how requests spread over the replicas: make check ARGS='--expect-replicas 5'
	$(VENV)/bin/balance-check $(ARGS)

browser: ## Install headless Chromium (Debian's package) for the page's browser test
	@command -v $(CHROMIUM) >/dev/null || { \
	  echo "browser: installing Debian's chromium with apt-get"; \
	  if [[ $$(id -u) == 0 ]]; then as_root=; else as_root=sudo; fi; \
	  $$as_root apt-get update -q && $$as_root apt-get install -y -q --no-install-recommends chromium; }

.PHONY: check browser

# --- Chaos and rollout: zero lost requests while replicas crash, scale and roll ---------
chaos: venv base-images ## Run only the chaos tests (crash, stop, hang, scale, roll, reload under load)
	$(VENV)/bin/pytest -m chaos tests/integration

rollout: ## Rebuild the app image and replace every replica one by one, losing no request
	$(COMPOSE) build app
	scripts/rollout.sh

.PHONY: chaos rollout
