# Every target sets up its own virtual environment on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
SCALE  ?= smoke
STAMP  := $(VENV)/.frx-installed

.PHONY: setup test test-all demo bench tables table1 table2 table3 table4 clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) scripts/bench.py

clean-venv:
	rm -rf $(VENV)
