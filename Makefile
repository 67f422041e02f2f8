# sqs-poller: every target creates what it needs; nothing to install by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: demo demo-lambda test test-servers bench bench-peers drill lint deploy-tools clean

$(VENV)/.installed-demo: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[demo]'
	touch $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[dev]'
	touch $@

demo: $(VENV)/.installed-demo
	$(VENV)/bin/sqs-poller demo

# An unchanged AWS Lambda function (Powertools' BatchProcessor) run by the daemon.
demo-lambda: $(VENV)/.installed-demo
	$(VENV)/bin/sqs-poller demo --lambda

# Tools the deployment checks need (packer, systemd tools, checkov in its own venv, the
# AWS provider schemas under .cache/provider-schema).
deploy-tools:
	bash scripts/install-deploy-tools.sh

test: $(VENV)/.installed-dev deploy-tools
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# The integration tests marked `servers` against LocalStack and fauxqs too: each installed,
# pinned, into .cache/test-servers/ (scripts/install-test-servers.sh), started on 127.0.0.1 by
# the suite and stopped after it (tests/servers.py, docs/testing.md). Moto stays `make test`'s.
TEST_SERVERS ?= localstack fauxqs
test-servers: $(VENV)/.installed-dev
	bash scripts/install-test-servers.sh
	status=0; for server in $(TEST_SERVERS); do \
		echo "== integration tests against $$server"; \
		$(PY) -m pytest -n 2 -m servers -rfEsxX --sqs-server=$$server $(PYTEST_ARGS) || status=1; \
	done; exit $$status

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check poller tests

bench: $(VENV)/.installed-dev
	$(PY) -m bench

# Peers side by side: each peer in its own pinned virtualenv under .venv-peers/ (see bench/README.md).
bench-peers: $(VENV)/.installed-dev
	PYTHON=$(PYTHON) bash bench/peers/install.sh
	$(PY) -m bench.peers

drill: $(VENV)/.installed-dev
	$(PY) -m pytest -m drill tests/integration/test_drills.py

clean:
	rm -rf $(VENV) .venv-checkov .venv-peers .cache build dist *.egg-info .pytest_cache .hypothesis
