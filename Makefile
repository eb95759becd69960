# The README's commands. Each target creates .venv if missing and installs the project into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export XLA_FLAGS ?=

.PHONY: sweep sweep-text test test-all test-slow bench notebooks train clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

sweep: $(STAMP)
	$(BIN)/python -m experiments.sweep run default

# The real-text main job: Python source of pinned packages (no download), adaptive, preregistered.
sweep-text: $(STAMP)
	$(BIN)/python -m experiments.sweep run text

train: $(STAMP)
	$(BIN)/lm-train

# The fast default (CI): every test not marked slow.
test: $(STAMP)
	$(BIN)/python -m pytest -q -x -rs --durations=15 -m "not slow"

# Everything, the slow end-to-end tests included (run before landing a change that touches them).
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -x -rs --durations=15

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -x -rs --durations=15 -m slow

bench: $(STAMP)
	$(BIN)/python -m experiments.bench.step
	$(BIN)/python -m experiments.bench.fit

notebooks: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,notebooks]'
	$(BIN)/jupyter notebook notebooks/

clean-venv:
	rm -rf $(VENV)
