# bayescale: `make demo` (set up + main job on the embedded demo data), `make test` (set up + tests).
# Both install into .venv/ at the repository root; .python-version makes pyenv's python3 resolve to 3.12.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "bayescale needs Python >= 3.12, but $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=/path/to/python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/bayescale demo --out out

test: setup
	$(VENV)/bin/python -m pytest -q -ra

test-fast: setup
	$(VENV)/bin/python -m pytest -q -ra -m "not slow"

bench: setup
	$(VENV)/bin/python benchmarks/fit_speed.py

clean:
	rm -rf $(VENV) out build dist .pytest_cache
