"""Micro-benchmarks of the pure per-request steps (``make bench-micro``)."""
