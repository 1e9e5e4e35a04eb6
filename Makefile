# One command per job; each installs what it needs into .venv first.
#   make demo   -- the main job (cached vs uncached demo)
#   make test   -- the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test install clean gpu-bench system-packages datasets

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the package's torch>=2.4 range alone would fetch a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,bpy,farm]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/reframe-blender demo

test: $(VENV)/.installed system-packages
	$(PY) -m pytest -q

# From Debian, installed where we are root with apt, else their tests skip and say why (CI, where CI=true, fails
# instead): Blender 3.4 (no Vector pass: the legacy path; the one real Blender window here, under xvfb-run) is
# tested as a real binary, and Sweet Home 3D's furniture catalog holds the real models of the held-out scene
# furnished_room.
SH3D_CATALOG := $(or $(REFRAME_SH3D_CATALOG),/usr/share/sweethome3d/furniture/BlendSwap-CC-0.sh3f)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
system-packages:
	@{ command -v blender && command -v xvfb-run && [ -f $(SH3D_CATALOG) ]; } >/dev/null || { \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq; } || true; \
		{ command -v blender && command -v xvfb-run; } >/dev/null || $(APT_INSTALL) blender xvfb >/dev/null || \
			echo "note: no 'blender' / 'xvfb-run' (Debian: apt-get install blender xvfb); their tests will skip"; \
		[ -f $(SH3D_CATALOG) ] || $(APT_INSTALL) sweethome3d-furniture >/dev/null || \
			echo "note: no furniture catalog (Debian: apt-get install sweethome3d-furniture); furnished_room's tests will skip"; }

# The EEVEE datasets behind the model cards and README's quality figures, into out/ (resumable; hours for all).
# GROUPS picks some: heldout heldout360 training training360 scales (scripts/datasets.sh says what each holds).
datasets: $(VENV)/.installed
	RF=$(VENV)/bin/reframe-blender bash scripts/datasets.sh $(GROUPS)

# GPU figures (needs a CUDA GPU): bench-cache of the shipped nets at 1920x1080, JSON in out/gpu.
gpu-bench: $(VENV)/.installed
	PYTHON=$(PY) bash scripts/gpu-bench.sh

clean:
	rm -rf $(VENV) build *.egg-info
