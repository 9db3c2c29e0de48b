# digit-serve: every chore is one target, and CI calls exactly these.
#   make serve   the service on the committed default model, on 0.0.0.0:8000
#   make test    lint, type-check and the whole test suite (what .ci/run runs)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
REQUIREMENTS := requirements/service-slim.txt requirements/service.txt requirements/train.txt requirements/dev.txt requirements/data.txt requirements/deploy.txt requirements/constraints.txt
HOST ?= 0.0.0.0
PORT ?= 8000
ARGS ?=

.PHONY: install tools chromium serve test lint typecheck pytest browser-test k8s-validate train not-a-digit digit-check-eval bench docker-test clean

install: $(STAMP)

# The virtual environment is rebuilt only when a requirements file changes.
$(STAMP): $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt -r requirements/dev.txt -r requirements/deploy.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/data.txt
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/python -m service --host $(HOST) --port $(PORT) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# promtool (Debian's prometheus package) checks the live /metrics exposition in the integration tests.
tools:
	command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus)

pytest: $(STAMP) tools
	$(BIN)/python -m pytest $(ARGS)

# Debian's Chromium for the page's browser tests (tests/browser); make test skips them, saying so, without it.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

browser-test: $(STAMP) chromium
	$(BIN)/python -m pytest tests/browser $(ARGS)

k8s-validate: $(STAMP)
	bash scripts/k8s-validate.sh

test: lint typecheck pytest k8s-validate

train: $(STAMP)
	$(BIN)/python -m training $(ARGS)

# A version that says when an input is not a digit: VERSION=models/mnist_convnet/2 (the next version is written).
not-a-digit: $(STAMP)
	$(BIN)/python -m training.not_a_digit $(VERSION) $(ARGS)

digit-check-eval: $(STAMP)
	$(BIN)/python -m bench.digit_check_eval $(ARGS)

bench: $(STAMP)
	command -v wrk >/dev/null && command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk nghttp2-client)
	$(BIN)/python -m bench $(ARGS)
	$(BIN)/python -m bench.hostile

docker-test: $(STAMP)
	bash scripts/docker-test.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench/results
