"""`ttcq report`: accuracy against budget and compute, per configuration and level, as
numbers (data), PNG plots (draw) and tables (tables)."""
