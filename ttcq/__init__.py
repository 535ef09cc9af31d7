"""ttcq: test-time-compute queue, one import name for the whole product.

ttcq.api, ttcq.db, ttcq.worker and ttcq.migrations are the folders api/, db/, worker/ and
migrations/ at the top of the checkout, reached through the links beside this file; the
wheel holds their files here. Settings and ids live in this package itself."""
