# `make demo`: set up .venv if needed, then run the whole pipeline on the quick setting.
# `make test`: set up .venv if needed, then run the test suite; `make test-fast`: the tests that start no process.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast bench clean-venv

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) example_compressed_training.py --mode all --quick

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 tests

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n 2 -m "not slow" tests

bench: $(VENV)/.installed
	$(PY) -m bench.bench

clean-venv:
	rm -rf $(VENV)
