# Set-up for a fresh clone: `make demo` and `make test` (see README).
# TORCH_SPEC picks the torch build; CI sets it to the CPU wheel (torch==2.13.0).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch>=2.3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sr-installed

.PHONY: install demo test test-quick test-wheel test-community clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,export,video]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	@mkdir -p out
	$(VENV)/bin/sr upscale docs/sample.png --scale 4 -o out/sample_x4.png --overwrite
	@echo "Upscaled docs/sample.png -> out/sample_x4.png"

# The wheel check runs first so that pytest's summary stays the last line of the output. CI runs
# `make test`: everything. test-quick leaves out the tests that start processes (marked subprocess:
# signals, torchrun, fresh interpreters), for the edit-test loop.
test: install test-wheel
	$(PY) -m pytest

test-quick: install
	$(PY) -m pytest -m "not subprocess"

# Build the wheel, install it into a fresh venv outside the checkout, run `sr models` and
# `sr upscale` with every shipped model from there (tests/wheel_smoke.sh).
test-wheel:
	PYTHON="$(PYTHON)" TORCH_SPEC="$(TORCH_SPEC)" bash tests/wheel_smoke.sh

clean:
	rm -rf $(VENV) out .pytest_cache

# Community architectures through spandrel need torchvision, which does not import beside the
# CPU-only torch 2.13 wheel; torch 2.14.1 + torchvision 0.29.1 do (a CUDA build, several GB), so
# this target builds its own environment.
COMMUNITY_VENV ?= .venv-community
COMMUNITY_TORCH ?= torch==2.14.1 torchvision==0.29.1

test-community:
	test -x $(COMMUNITY_VENV)/bin/python || $(PYTHON) -m venv $(COMMUNITY_VENV)
	$(COMMUNITY_VENV)/bin/python -m pip install -q $(COMMUNITY_TORCH)
	$(COMMUNITY_VENV)/bin/python -m pip install -q -e ".[test,export,community]"
	$(COMMUNITY_VENV)/bin/python -m pytest tests/test_foreign.py tests/test_export.py -rs

# OpenCV's dnn_superres models (shared/peers/opencv_dnn_superres) timed beside ours. They need the
# opencv-contrib build, which cannot share an environment with the project's opencv-python-headless
# (both own the cv2 package), so this target builds its own: `make bench-peers BENCH_PEERS_ARGS="--psnr"`.
PEERS_VENV ?= .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.peers-installed
BENCH_PEERS_ARGS ?=

.PHONY: bench-peers

# opencv-contrib <5.1: OpenCV 5.1's dnn hands the peers' TensorFlow .pb files to its ONNX importer,
# which fails ("model_proto.has_graph()"); 4.14 and 5.0 read them and score the same.
$(PEERS_STAMP): pyproject.toml Makefile
	test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install -q --upgrade pip
	$(PEERS_PY) -m pip install -q "$(TORCH_SPEC)"
	$(PEERS_PY) -m pip install -q -e .
	$(PEERS_PY) -m pip uninstall -q -y opencv-python-headless
	$(PEERS_PY) -m pip install -q --force-reinstall --no-deps "opencv-contrib-python-headless<5.1"
	$(PEERS_PY) -c "import cv2; cv2.dnn_superres.DnnSuperResImpl_create()"
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	$(PEERS_PY) benchmarks/opencv_peers.py $(BENCH_PEERS_ARGS)
