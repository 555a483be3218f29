# One virtual environment for everything; `make demo` and `make test` create it on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUNS   := runs

.PHONY: setup demo test test-fast lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

PHOTO = $$($(BIN)/python -c 'import matplotlib, os; print(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"))')

# The main job on the embedded default (ONNX Runtime, CPU): a tutorial-size checkpoint in the
# tutorial's format (random weights), exported to a checked bundle, inspected, and run on a photograph.
demo: setup
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

lint: setup
	$(BIN)/ruff check glimpse tests benchmarks
	$(BIN)/ruff format --check glimpse tests benchmarks

bench: setup
	$(BIN)/python benchmarks/sat_step.py

clean:
	rm -rf $(RUNS) .pytest_cache
