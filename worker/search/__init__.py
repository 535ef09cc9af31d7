"""Search strategies: plain functions of (problem, config, engine, verifier)."""
