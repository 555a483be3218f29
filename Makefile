# One virtual environment for everything; `make demo` and `make test` create it on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUNS   := runs

.PHONY: setup demo tutorial demo-model test test-fast lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-cache-dir -e '.[dev]'
	touch $@

PHOTO = $$($(BIN)/python -c 'import matplotlib, os; print(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))')

# The main job on the embedded default (ONNX Runtime, CPU): the packaged demo model (trained on
# generated scenes, in the tutorial's checkpoint format) exported, run on held-out scenes, scored, timed.
demo: setup
	$(BIN)/glimpse demo --out $(RUNS)/demo --attention-plot $(RUNS)/demo/attention.png

# Remake the packaged demo models (about 70 minutes on 2 cores).
demo-model: setup
	$(BIN)/glimpse demo train --out glimpse/demo/checkpoints

# A tutorial-size checkpoint (ResNet-101, random weights) in the tutorial's format: export, inspect, caption.
tutorial: setup
	$(BIN)/python tests/tutorial.py $(RUNS)/tutorial
	$(BIN)/glimpse export sat --force --out $(RUNS)/sat-bundle \
	  --checkpoint $(RUNS)/tutorial/BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar \
	  --word-map $(RUNS)/tutorial/WORDMAP_coco_5_cap_per_img_5_min_word_freq.json
	$(BIN)/glimpse inspect $(RUNS)/sat-bundle
	$(BIN)/glimpse caption $(RUNS)/sat-bundle $(PHOTO) --beam-size 5 --json --attention-plot $(RUNS)/attention.png

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# ruff, and the import contract of pyproject.toml (layers; no family imports another)
lint: setup
	$(BIN)/ruff check glimpse tests benchmarks
	$(BIN)/ruff format --check glimpse tests benchmarks
	$(BIN)/lint-imports

# The benchmark suite on this machine's CPU: the tutorial-size model, then the demo model; one step alone;
# an M2 caption at the public sizes against upstream's decoding.
bench: setup
	$(BIN)/glimpse bench --model tutorial
	$(BIN)/glimpse bench --model demo --images 20
	$(BIN)/python benchmarks/sat_step.py
	$(BIN)/python benchmarks/m2_decode.py

clean:
	rm -rf $(RUNS) .pytest_cache
