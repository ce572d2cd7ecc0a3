# Two entry points, each working from a fresh clone: `make demo` and `make test`.
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test

$(PY):
	@command -v pyenv >/dev/null 2>&1 && { pyenv install -s $(PYTHON_VERSION) >/dev/null; } || true
	python$(PYTHON_VERSION) -m venv $(VENV) || $$(pyenv root)/versions/$$(pyenv latest $(PYTHON_VERSION))/bin/python -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m stacube.demo

test: $(STAMP)
	$(VENV)/bin/ruff check stacube tests bench
	$(PY) -m pytest tests
