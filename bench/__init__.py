"""Benchmarks: the end-to-end suite (``make bench``) and micro-benchmarks."""
