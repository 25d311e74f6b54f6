# make demo: environment, demo model (first time), service on :8000.   make test: environment, lint, tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: install chromium wrk label-studio demo test lint check-serving clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, with pip: the pinned CPU build on this disk, so the range in pyproject.toml installs nothing
# larger. The rest with uv (the same packages as pip would take, in a fraction of the time).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0" "uv>=0.5"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo/export/encoder.onnx: | $(VENV)/.installed
	$(BIN)/python -m triplex.training.demo --output demo

demo: install demo/export/encoder.onnx
	@echo
	@echo "Serving the demo model on http://127.0.0.1:$(PORT) (docs: /docs). Try:"
	@echo "  curl -s localhost:$(PORT)/v1/extract -H 'content-type: application/json' \\"
	@echo "       -d '{\"text\": \"Alice Moreau, who was born in Osaka, works for Kestrel Foods.\"}'"
	@echo
	$(BIN)/triplex serve --model demo/export --port $(PORT)

# The page's browser test drives Debian's chromium (Playwright's own browser download needs the internet).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium > /dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > /dev/null; }

# The native load generator of the benchmarks and of the GPU program's rehearsal: a Python client costs as
# much CPU as the server.
wrk:
	@command -v wrk > /dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk > /dev/null; }

# Label Studio for the labelling loop's test, in an environment of its own so that its pins never touch the
# project's; where it cannot be installed, that test skips and says so.
LS_VENV := .venv-label-studio
$(LS_VENV)/bin/label-studio: | $(VENV)/.installed
	test -x $(BIN)/uv || $(BIN)/pip install --quiet "uv>=0.5"
	$(BIN)/uv venv --quiet --python $(PYTHON) $(LS_VENV)
	$(BIN)/uv pip install --quiet --python $(LS_VENV)/bin/python "label-studio>=1.23,<1.24" || \
		echo "Label Studio could not be installed: its test will skip"

label-studio: $(LS_VENV)/bin/label-studio

# Two pytest processes (each test file in one of them; tests that train use one thread each): CI has 2 cores.
test: install chromium wrk label-studio
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations 30

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile docker/Dockerfile.cpu docker/Dockerfile.train docker/Dockerfile.ray

# What the image runs: a fresh environment with only the serving dependencies, the entrypoint's command.
check-serving: install
	bash docker/check-serving.sh $(DEMO_EXPORT)

clean:
	rm -rf $(VENV) .venv-serve $(LS_VENV) .pytest_cache .ruff_cache
