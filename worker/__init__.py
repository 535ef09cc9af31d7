"""The worker: Celery tasks (thin) and the search domain (engines, verifiers, strategies)."""
