# simfleet developer commands. Every target creates .venv and installs pinned requirements first.
# The pinned requirements (pulumi, pydantic, boto3, kubernetes) need Python >= 3.11. `python3` is too old on some hosts
# (Amazon Linux 2023's is 3.9, with 3.11 beside it as python3.11), so the interpreter is picked by name: the first of
# these on PATH that is new enough. `make PYTHON=/path/to/python3.12 ...` chooses one explicitly.
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3
NEW_ENOUGH := -c 'import sys; sys.exit(sys.version_info < (3, 11))'
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell command -v $(p) >/dev/null 2>&1 && $(p) $(NEW_ENOUGH) 2>/dev/null && echo $(p))))
endif
NO_PYTHON := no Python 3.11 or newer found (tried $(PYTHON_CANDIDATES) on PATH); install one (Amazon Linux 2023: sudo dnf install -y python3.11) or run make PYTHON=/path/to/python3.11
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
CONFIG ?=
AGAINST ?=
PLAN_ARGS := $(if $(CONFIG),--config $(CONFIG),--stack $(STACK)) $(if $(AGAINST),--against $(AGAINST))
PREFLIGHT_ARGS := $(if $(CONFIG),--config $(CONFIG),--stack $(STACK))
# uv installs the pinned requirements several times faster than pip (from its cache when warm): a uv on PATH, else uv
# installed by pip into the venv (one wheel; PyPI `uv`, newest on 2026-12-07), else pip itself (offline, no uv wheel
# for this platform). `make UV= ...` with an empty value still looks on PATH; `make NO_UV=1 ...` uses pip only.
UV_VERSION := 0.13.10
UV ?= $(shell command -v uv 2>/dev/null)
# uv installs no bytecode, and a shell with PYTHONDONTWRITEBYTECODE set (some CI images and containers) then never
# writes any: every Python process, each test worker and each plan the tests start, compiled pulumi_aws and the rest
# from source again. Here Python writes each module's bytecode into .venv the first time it imports it.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv test plan plan-all preflight bench lint typecheck schema clean

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-cli.txt policies/requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: $(NO_PYTHON)" >&2; exit 2; }
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: PYTHON=$(PYTHON) was not found (no such file, nor a command on PATH); install it, or leave PYTHON out to pick one of $(PYTHON_CANDIDATES) by name" >&2; exit 2; }
	@$(PYTHON) $(NEW_ENOUGH) 2>/dev/null || { echo "make: PYTHON=$(PYTHON) is older than 3.11; $(NO_PYTHON)" >&2; exit 2; }
	@! test -x $(PY) || $(PY) $(NEW_ENOUGH) || { echo "make: $(VENV) was made by a Python older than 3.11; remove it (rm -rf $(VENV)) and run make again" >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@uv="$(if $(NO_UV),,$(UV))"; \
	if [ -z "$(NO_UV)" ] && [ -z "$$uv" ] && $(PY) -m pip install --quiet "uv==$(UV_VERSION)" && test -x $(VENV)/bin/uv; then \
	  uv=$(VENV)/bin/uv; \
	fi; \
	if [ -n "$$uv" ]; then \
	  echo "$$uv pip install --python $(PY) -r requirements-dev.txt -e ."; \
	  "$$uv" pip install --quiet --python $(PY) -r requirements-dev.txt -e .; \
	else \
	  echo "$(PY) -m pip install -r requirements-dev.txt -e ."; \
	  $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -r requirements-dev.txt -e .; \
	fi
	touch $@

venv: $(VENV)/.installed

# Two pytest-xdist workers per core (TEST_WORKERS=0: in this process); each worker starts its own servers on free ports.
# Two, not one: the pod-script and fault tests spend much of their time waiting on real clocks (heartbeats, retries,
# the AWS CLI's backoff), which a second worker per core fills. On 2 cores, 2026-12-07: 218 s with 4 workers, 282 s
# with 2, side by side on an otherwise idle machine. It prints the ten slowest tests at the end.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(2 * (os.cpu_count() or 1))' 2>/dev/null || echo 2)
test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=10

plan: venv
	$(PY) -m tools.plan $(PLAN_ARGS)

plan-all: venv
	$(PY) -m tools.plan --stack dev
	$(PY) -m tools.plan --stack prod

# Read-only checks of the real AWS account (quotas, EKS version and add-on builds, instance offerings) before
# `pulumi up`; needs AWS credentials. Exit 1: a check failed; 2: no credentials or an invalid stack file.
preflight: venv
	$(PY) -m tools.preflight $(PREFLIGHT_ARGS)

bench: venv
	$(PY) -m tools.bench

# Pod scripts that run under the user image's /bin/sh (POSIX sh, not bash); tests/test_shellcheck.py names the same.
POSIX_SCRIPTS := workloads/scripts/job-entry.sh

# zizmor --offline: the workflow audits that need no GitHub API (pinning, credentials, permissions, injection).
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/zizmor --offline .github/workflows/
	$(VENV)/bin/shellcheck --shell=bash --severity=style -x $(filter-out $(POSIX_SCRIPTS),$(wildcard workloads/scripts/*.sh))
	$(VENV)/bin/shellcheck --shell=sh --severity=style $(POSIX_SCRIPTS)
	$(VENV)/bin/shellcheck --shell=bash --severity=style .ci/run .ci/runner-user-data.sh

typecheck: venv
	$(PY) -m mypy .

# Regenerates schema/stack-config.schema.json from config/ (commit the result; a test fails when it is stale).
schema: venv
	$(PY) -m tools.schema

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
