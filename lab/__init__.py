"""The lab: ttcq's validation work, kept out of the product (the wheel and the image leave
it out). The ground-truth task and its test doubles (lab.ground_truth), the real servers
for tests and benchmarks (lab.servers), a worker process on an engine double
(lab.double_worker), and the experiments, each run the one way:

    .venv/bin/python -m lab.report_example --db sqlite:///ground_truth.db   # the README's report
    .venv/bin/python -m lab.agreement --db URL --problems 2000   # curves against references
    .venv/bin/python -m lab.compute_optimal --db sqlite:////tmp/co.db   # does it pay?
    .venv/bin/python -m lab.adaptive_search --problems 600   # early stopping, particle filters
"""
