# Two entry points on a fresh machine: `make demo` and `make test`. Each makes .venv first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml setup.py src/plasmacount/_bamkernel.c src/plasmacount/_segmentkernel.c
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/plasmacount demo demo-output

test: $(STAMP)
	$(PYTHON) -m pytest -q

bench: $(STAMP)
	$(PYTHON) benchmarks/count_speed.py --write
	$(PYTHON) benchmarks/count_speed.py --paired --write

clean:
	rm -rf $(VENV) demo-output build src/*.egg-info src/plasmacount/*.so
