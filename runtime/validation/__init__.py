"""Backends side by side: build, validate, report, pick, tune, sweeps."""
