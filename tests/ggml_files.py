"""Tiny Llama GGUF files written in code (the gguf package's writer) covering every GGML format, for unit tests;
random blocks come from svdq_edge/gguf/synthetic.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from svdq_edge.ggml import GGMLType
from svdq_edge.gguf.synthetic import LlamaShape, add_llama_metadata, random_blocks  # noqa: F401 (re-exported)

# A tiny Llama: every width a multiple of 256, so the K-quants fit; tensor types chosen to cover every format.
TINY = LlamaShape(hidden=256, intermediate=512, layers=2, heads=4, kv_heads=2, context=64)
TINY_VOCAB = 320
TINY_TYPES = {
    "attn_q": GGMLType.Q4_K, "attn_k": GGMLType.Q5_K, "attn_v": GGMLType.Q6_K, "attn_output": GGMLType.Q4_1,
    "ffn_gate": GGMLType.Q4_0, "ffn_up": GGMLType.Q3_K, "ffn_down": GGMLType.Q2_K,
}
LAYER1_TYPES = {"attn_q": GGMLType.Q5_0, "attn_k": GGMLType.Q5_1, "ffn_gate": GGMLType.Q8_0}


def write_tiny_llama_gguf(path: Path, table: GGMLType = GGMLType.Q8_0, head: GGMLType | None = None) -> Path:
    """A 2-layer Llama GGUF: layer 0 in TINY_TYPES, layer 1 with LAYER1_TYPES swapped in; norms F32. `head` None
    ties the output head to `table` (no output.weight, as SmolLM2's file)."""
    import gguf

    w = gguf.GGUFWriter(path, "llama")
    add_llama_metadata(w, TINY, TINY_VOCAB, gguf.LlamaFileType.MOSTLY_Q4_K_M)
    rng = np.random.default_rng(1)

    def quant(name: str, kind: GGMLType, rows: int, K: int, seed: int) -> None:
        w.add_tensor(name, random_blocks(kind, rows, K, seed), raw_dtype=gguf.GGMLQuantizationType(kind.value))

    def norm(name: str) -> None:
        w.add_tensor(name, rng.uniform(0.5, 1.5, TINY.hidden).astype(np.float32))

    quant("token_embd.weight", table, TINY_VOCAB, TINY.hidden, 0)
    if head is not None:
        quant("output.weight", head, TINY_VOCAB, TINY.hidden, 99)
    norm("output_norm.weight")
    for i in range(TINY.layers):
        types = TINY_TYPES | (LAYER1_TYPES if i == 1 else {})
        for j, (part, (rows, K)) in enumerate(TINY.linear_shapes().items()):
            quant(f"blk.{i}.{part}.weight", types[part], rows, K, 10 * i + j + 1)
        norm(f"blk.{i}.attn_norm.weight")
        norm(f"blk.{i}.ffn_norm.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
