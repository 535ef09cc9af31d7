"""The HTTP API (FastAPI, under /v1), the `ttcq` CLI and dataset parsing."""
