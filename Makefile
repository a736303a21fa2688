# Two entry points on a fresh machine: `make demo` and `make test`. Each makes .venv first.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo serve-demo lint test bench clean

$(STAMP): pyproject.toml setup.py src/plasmacount/_bamkernel.c src/plasmacount/_segmentkernel.c
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/plasmacount demo demo-output

# The review app on the demo's prenatal batch: log in as `demo` / `demo-password` at http://127.0.0.1:8000
serve-demo: $(STAMP)
	test -d demo-output/reports/prenatal || $(VENV)/bin/plasmacount demo demo-output
	rm -f demo-output/review.sqlite
	PLASMACOUNT_DEMO_PASSWORD=demo-password $(VENV)/bin/plasmacount user add demo --role admin --password-env PLASMACOUNT_DEMO_PASSWORD --database demo-output/review.sqlite
	$(VENV)/bin/plasmacount import demo-output/nipt demo-output/reports/prenatal --name prenatal --database demo-output/review.sqlite
	$(VENV)/bin/plasmacount serve --database demo-output/review.sqlite

# Style, lint and types first: a test run is only green when they are.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PYTHON) -m pytest -q

bench: $(STAMP)
	$(PYTHON) benchmarks/count_speed.py --write
	$(PYTHON) benchmarks/count_speed.py --paired --write

clean:
	rm -rf $(VENV) demo-output build src/*.egg-info src/plasmacount/*.so
