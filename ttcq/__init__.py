"""ttcq: test-time-compute queue. Shared settings and the bundled sample data live here."""
