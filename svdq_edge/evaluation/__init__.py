"""Datasets, PyTorch evaluation, statistics, fidelity, and explanations of a quantized model."""
