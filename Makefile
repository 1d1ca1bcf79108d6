# bayescale: `make demo` (set up + main job on the embedded demo data), `make test` (set up + tests).
# Both install into .venv/ at the repository root; .python-version makes pyenv's python3 resolve to 3.12.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-fast ruff lint docs bench notebooks clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "bayescale needs Python >= 3.12, but $(PYTHON) is " + sys.version.split()[0] + ": run make PYTHON=/path/to/python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ echo "installing Debian's chromium (the report's browser test needs it)"; \
		  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		  $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; } || \
		  echo "warning: could not install chromium; the browser test will be skipped (and fail under CI=true)"; }
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/bayescale demo --out out

ruff: setup  # ruff's lint rules and formatting (pyproject.toml)
	$(VENV)/bin/ruff check bayescale tests benchmarks
	$(VENV)/bin/ruff format --check bayescale tests benchmarks

lint: ruff  # and mypy's type check (pyproject.toml; about 40 s on an empty cache)
	$(VENV)/bin/mypy

test: lint  # two pytest workers, whole files each (module fixtures are fitted once): compiles overlap sampling
	$(VENV)/bin/python -m pytest -q -ra -n 2 --dist loadfile --durations=20

test-fast: ruff
	$(VENV)/bin/python -m pytest -q -ra -n 2 --dist loadfile -m "not slow"

docs: setup  # the user guide and the API and CLI reference, warnings as errors
	$(VENV)/bin/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

notebooks: setup  # re-execute the notebooks in place at the default settings, so they are committed with outputs
	for nb in notebooks/*.ipynb; do $(VENV)/bin/python -c "import sys, nbformat; from nbclient import NotebookClient; nb = nbformat.read(sys.argv[1], 4); NotebookClient(nb, timeout=1200, kernel_name='python3', resources={'metadata': {'path': 'notebooks'}}).execute(); nbformat.write(nb, sys.argv[1])" $$nb || exit 1; done

bench: setup
	$(VENV)/bin/python benchmarks/fit_speed.py

clean:
	rm -rf $(VENV) out build dist .pytest_cache .mypy_cache .ruff_cache docs/_build
