# Targets shared by contributors and CI (.ci/run calls `make test`).
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/$(VENV):$(CURDIR)/.ci/tools/node_modules/.bin:$(PATH)
export UV_PYTHON_DOWNLOADS := never

.PHONY: setup dev test test-fast lint typecheck protos bench clean

setup:  ## install system packages, the locked Python env, Node and chart tools
	@bash .ci/setup

dev: setup  ## gateway + every example function on an in-process bus, on :8080
	$(VENV)/functl dev example/functions.yaml

test: setup lint typecheck  ## lint, types, then the whole suite (real Valkey 8 / Redis 7)
	$(VENV)/pytest -q

test-fast:  ## unit tier only (memory bus, fakeredis): no servers needed
	$(VENV)/pytest -q -m "not real"

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:  ## mypy strict on the three packages, through their installed names
	@bash .ci/typecheck

protos:  ## regenerate the committed gRPC stubs of KEDA's external scaler (gateway/externalscaler)
	@bash .ci/protos

bench: setup
	$(VENV)/python bench/runtime.py
	$(VENV)/python bench/gateway.py
	$(VENV)/python bench/languages.py

clean:
	rm -rf .venv .ci/tools build .pytest_cache .mypy_cache .ruff_cache
