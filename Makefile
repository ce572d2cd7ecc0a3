# Two entry points, each working from a fresh clone: `make demo` and `make test`.
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test

# python3.12 comes from pyenv (.python-version); nothing is downloaded here but packages from PyPI.
$(PY):
	python$(PYTHON_VERSION) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m stacube.demo

test: $(STAMP)
	$(VENV)/bin/ruff check stacube tests bench
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests
