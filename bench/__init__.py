"""Benchmarks: `make bench` (bench/run.py) and the single-purpose scripts beside it."""
