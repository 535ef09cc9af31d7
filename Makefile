# The two commands a new machine needs: `make demo` and `make test` (each installs first).
.PHONY: install demo test lint bench

install:
	bash scripts/install.sh

demo: install
	.venv/bin/ttcq run examples/gsm8k_sample.jsonl --strategy majority --n 4 --limit 8 --out out.jsonl

test: install
	bash scripts/services.sh
	.venv/bin/python -m pytest --cov --cov-report=term-missing:skip-covered

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: install
	bash scripts/services.sh
	.venv/bin/python bench/run_all.py
