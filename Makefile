# make setup: .venv with aekit, all extras and dev tools (CPU torch 2.13.0 first when no torch is present)
# make demo:  setup, then train on the sample digits shipped with aekit
# make test:  setup, then the test suite
# make fuzz:  setup, then tests/test_fuzz.py with 2000 examples per reader (AEKIT_FUZZ_EXAMPLES)
# make lint:  ruff check and format check
# make docs:  setup, then the documentation site (Sphinx + MyST) in docs/_build/html; warnings are errors
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test fuzz lint docs clean
setup: $(BIN)/aekit

$(BIN)/aekit: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# A bare `torch` requirement would pull several GB of CUDA wheels: install the CPU build
	# first when no torch is present; a torch already in the venv is kept.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $(BIN)/aekit

demo: setup
	$(BIN)/aekit demo

test: setup
	$(BIN)/python -m pytest -q

fuzz: setup
	AEKIT_FUZZ_EXAMPLES=2000 $(BIN)/python -m pytest -q tests/test_fuzz.py

lint: setup
	$(BIN)/ruff check src tests scripts docs
	$(BIN)/ruff format --check src tests scripts docs

docs: setup
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info docs/_build
