"""The benchmark harness: each server in its own process, driven by a real load generator from another process.

Run it with `python -m bench` (or `make bench`); `python -m bench --smoke` is the seconds-long variant CI runs.
See bench/README.md for what is measured and how to read the table.
"""
