# Set-up for a fresh clone: `make demo` and `make test` (see README).
# TORCH_SPEC picks the torch build; CI sets it to the CPU wheel (torch==2.13.0).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch>=2.3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sr-installed

.PHONY: install demo test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,export]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p out
	$(VENV)/bin/sr upscale docs/sample.png --scale 4 -o out/sample_x4.png --overwrite
	@echo "Upscaled docs/sample.png -> out/sample_x4.png"

test: install
	$(PY) -m pytest

clean:
	rm -rf $(VENV) out .pytest_cache
