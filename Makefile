# The README's two commands: `make demo` and `make test` (and `make demo-dvs`, the DVS demo).
# Both create .venv on first use and install the project into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

# torch is installed first and pinned, so that pip never resolves torch on its own
# (a bare `torch` can pull a multi-GB CUDA build). On a machine whose pip has no
# local CPU wheel, set TORCH_INDEX=https://download.pytorch.org/whl/cpu for a
# small CPU-only build, or TORCH_SPEC to the release you want. An already
# installed torch is kept.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo demo-dvs test

demo: $(VENV)/.installed-demo
	$(VENV)/bin/spikeflash demo

demo-dvs: $(VENV)/.installed-demo
	$(VENV)/bin/spikeflash demo --dvs

# hardware_tests/ run against the device named by SPIKEFLASH_DEVICE (a URL); by default
# against an emulator that the suite starts on a pseudo-terminal (the real serial path).
test: $(VENV)/.installed-dev
	SPIKEFLASH_DEVICE=$${SPIKEFLASH_DEVICE:-emulate:pty} $(PY) -m pytest

$(VENV)/.installed-torch:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || \
		$(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed-demo: pyproject.toml $(VENV)/.installed-torch
	$(PY) -m pip install -e ".[demo]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-torch
	$(PY) -m pip install -e ".[dev]"
	touch $@
