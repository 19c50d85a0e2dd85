"""Measurements of one session: latency, memory, output metrics, dataset evaluation."""
