"""The schema (SQLModel) and every query that the API, worker and CLI share."""
