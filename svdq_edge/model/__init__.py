"""PyTorch modules that stand for the exported ops (MatMulNBits + correction, GatherBlockQuantized)."""
