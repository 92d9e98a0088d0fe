# Two commands set everything up on a fresh machine with only Python 3.11+:
#   make demo   - the daily job on the embedded default (synthetic marketplace, local Dask cluster)
#   make test   - the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test venv bench quality clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/encore demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/similarity.py --sizes S,M
	$(BIN)/python benchmarks/recommend_throughput.py

quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf data out .pytest_cache
