# One command per job; each installs what it needs into .venv first.
#   make demo   -- the main job (cached vs uncached demo)
#   make test   -- the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test install clean gpu-bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the package's torch>=2.4 range alone would fetch a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bpy]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/reframe-blender demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

# GPU figures (needs a CUDA GPU): bench-cache of the shipped nets at 1920x1080, JSON in out/gpu.
gpu-bench: $(VENV)/.installed
	PYTHON=$(PY) bash scripts/gpu-bench.sh

clean:
	rm -rf $(VENV) build *.egg-info
