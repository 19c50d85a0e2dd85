"""Quantization formats and the per-weight algorithms: block codes, packing, decompositions, GPTQ, int8."""
