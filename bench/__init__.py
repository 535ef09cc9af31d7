"""Benchmarks, each run as `python -m bench.NAME` (all of them: `make bench`)."""
