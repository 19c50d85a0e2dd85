"""Process-level helpers for entry points: logging, memory tuning, tables, telemetry."""
