"""Benchmark command lines (python -m svdq_edge.runtime.bench.<name>); no library module imports them."""
