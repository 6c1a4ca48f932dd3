# The two commands of the README: `make up` (start the platform) and `make test`.
PYTHON ?= python3
VENV   := .venv
# Abaco's and Tapis's SDKs (agavepy, tapipy), for the client suites: a venv of their own,
# since their pinned dependencies clash with the test tools'.
CLIENTS := .venv-clients
PY     := $(VENV)/bin/python
APT_PACKAGES := docker.io redis-server busybox-static debootstrap docker-compose

.PHONY: up down status test lint bench images system-deps browser-deps

up: $(VENV)/.installed system-deps
	$(VENV)/bin/abaco up
	$(PY) images/build.py

down:
	$(VENV)/bin/abaco down

status:
	$(VENV)/bin/abaco status

# The dashboard test's screenshots are kept in .artifacts/.
test: $(VENV)/.installed $(CLIENTS)/.installed system-deps browser-deps lint
	ABACO_TEST_ARTIFACTS=$(CURDIR)/.artifacts $(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy

images: $(VENV)/.installed system-deps
	$(PY) images/build.py

bench: $(VENV)/.installed
	$(PY) bench/warm_latency.py

# Debian packages: the Docker engine, Redis, a static busybox for shell test images,
# debootstrap for the Python one and docker-compose (to check docker-compose.yml).
system-deps:
	@if ! command -v dockerd >/dev/null || ! command -v redis-server >/dev/null \
	    || ! command -v debootstrap >/dev/null || ! command -v docker-compose >/dev/null \
	    || ! ldd "$$(command -v busybox || echo /nonexistent)" 2>&1 | grep -q 'not a dynamic'; then \
	  echo "installing $(APT_PACKAGES) (apt-get)"; \
	  apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(CLIENTS)/.installed: Makefile
	$(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/python -m pip install -q tapipy 'agavepy==0.9.5'
	touch $@

# For the tests only: the dashboard is driven in a real headless browser.
BROWSER_PACKAGES := chromium chromium-driver
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing $(BROWSER_PACKAGES) (apt-get)"; \
	  apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES) >/dev/null; \
	fi
