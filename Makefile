# The project's two entry points (see README.md):
#   make reproduce [PROFILE=quick|smoke|paper|controls|cifar] [DEVICE=auto|cpu|cuda] [EXECUTOR=local|processes|slurm]
#   make test
# Both create .venv and install the project into it the first time (or when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
DEVICE ?= auto
EXECUTOR ?= local

.PHONY: reproduce test nbval benchmark stopping-rule curves gpu-check gpu-pack lab clean-outputs

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

reproduce: $(VENV)/.installed
	$(PY) -m lth_core.programs.reproduce --profile $(PROFILE) --device $(DEVICE) --executor $(EXECUTOR)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests
	$(MAKE) --no-print-directory nbval

# The notebooks under nbval (their smoke defaults) write outputs, runs and the decoded-data cache into a
# temporary folder that notebooks/conftest.py makes and removes: the empty values below make it ignore the
# caller's LTH_* folders too, so `make test` never replaces a real run's results.
# tests/jobs/test_outputs.py runs this target on one notebook (NBVAL_NOTEBOOKS=...) to check that.
NBVAL_NOTEBOOKS ?= notebooks
nbval: $(VENV)/.installed
	LTH_OUTPUTS_DIR= LTH_RUNS_DIR= LTH_CACHE_DIR= $(PY) -m pytest -q --nbval-lax $(NBVAL_NOTEBOOKS)

benchmark: $(VENV)/.installed
	$(PY) -m lth_core.programs.benchmark

# What a patience of 10..150 evaluations would change, replayed on the profile's stored full-budget LeNet curves
stopping-rule: $(VENV)/.installed
	$(PY) -m lth_core.programs.stopping_rule --profile $(PROFILE)

# A network's stopping rule and float32-against-bf16 agreement from full-budget curves it trains (or resumes):
#   make curves [NETWORK=conv2] [CURVE_ITERATIONS=5000] [CURVE_ROUNDS=2]   (lth_core/programs/curves.py)
NETWORK ?= conv2
CURVE_ITERATIONS ?= 5000
CURVE_ROUNDS ?= 2
curves: $(VENV)/.installed
	$(PY) -m lth_core.programs.curves --network $(NETWORK) --iterations $(CURVE_ITERATIONS) --rounds $(CURVE_ROUNDS) \
		--device $(DEVICE)

# On a machine with a CUDA GPU, at most 8 minutes: CUDA tests, benchmark, Figure 1's Conv-2 at paper settings
# (see lth_core/programs/gpu_check.py); GPU_PYTHON=python3 uses an interpreter that already has torch instead of .venv.
GPU_PYTHON ?=
gpu-check: $(if $(GPU_PYTHON),,$(VENV)/.installed)
	$(or $(GPU_PYTHON),$(PY)) -m lth_core.programs.gpu_check

# Before lending a GPU machine the working tree: CIFAR-10's JPEG tree packed byte for byte into .gpu/ (57 MB,
# ignored by git; carry it along), which gpu-check unpacks there. LTH_DATA_DIR names the folder holding CIFAR10-jpg.
gpu-pack: $(VENV)/.installed
	$(PY) -c "import os, pathlib; from lth_core.programs.gpu_check import pack_jpeg_folder; \
	print(pack_jpeg_folder(pathlib.Path(os.environ['LTH_DATA_DIR']) / 'CIFAR10-jpg', pathlib.Path('.gpu/cifar10-jpg.npz')))"


lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks

# every generated folder under outputs/ (the run store and each profile's outputs); outputs/README.md stays
clean-outputs:
	find outputs -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
