"""Calibration: input statistics, synthetic calibration data, AWQ folding, layer sensitivity."""
