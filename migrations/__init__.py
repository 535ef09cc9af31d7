"""Alembic migrations; the URL comes from the settings (or the caller's Config)."""
