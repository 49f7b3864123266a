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

test: venv base-images ## Run every test: unit, then integration against a stack of its own
	$(VENV)/bin/pytest

unit: venv ## Run the tests that need nothing but Python
	$(VENV)/bin/pytest tests/unit

lint: venv ## Lint the Python, the nginx config and the compose file
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(COMPOSE) config -q

.PHONY: help base-images up down ps logs reload venv test unit lint
