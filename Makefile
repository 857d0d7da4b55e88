# The project's two entry points (see README.md):
#   make reproduce [PROFILE=quick|smoke|paper] [DEVICE=auto|cpu|cuda] [EXECUTOR=local|processes|slurm]
#   make test
# Both create .venv and install the project into it the first time (or when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= auto
EXECUTOR ?= local

.PHONY: reproduce test benchmark lab clean-outputs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

reproduce: $(VENV)/.installed
	$(PY) -m lth_core.report.reproduce --profile $(PROFILE) --device $(DEVICE) --executor $(EXECUTOR)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval-lax notebooks

benchmark: $(VENV)/.installed
	$(PY) -m lth_core.report.benchmark


lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks

clean-outputs:
	rm -rf outputs/runs outputs/tables outputs/figures outputs/notebooks
