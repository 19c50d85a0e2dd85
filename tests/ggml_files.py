"""Random GGML blocks and tiny Llama GGUF files written in code (the gguf package's writer), for unit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from svdq_edge.ggml import GGMLType

# Byte ranges of each block format's FP16 factors (d, dmin): random bytes elsewhere are valid codes and scales.
F16_FIELDS = {
    GGMLType.Q4_0: (0,), GGMLType.Q4_1: (0, 2), GGMLType.Q5_0: (0,), GGMLType.Q5_1: (0, 2), GGMLType.Q8_0: (0,),
    GGMLType.Q2_K: (80, 82), GGMLType.Q3_K: (108,), GGMLType.Q4_K: (0, 2), GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
}


def random_blocks(kind: GGMLType, rows: int, K: int, seed: int = 0, d: float = 0.01) -> np.ndarray:
    """uint8 [rows, row bytes] of `kind`: random codes and sub-block scales, FP16 factors in (d/2, d)
    (negative mins included), so every weight is finite and of a usable size."""
    import gguf

    per_block, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind.value)]
    rng = np.random.default_rng(seed)
    nb = K // per_block
    raw = rng.integers(0, 256, (rows, nb, block_bytes), dtype=np.uint8)
    for i, at in enumerate(F16_FIELDS[kind]):
        sign = -1.0 if i == 1 and kind in (GGMLType.Q4_1, GGMLType.Q5_1) else 1.0  # legacy mins are the block min
        halves = (sign * rng.uniform(d / 2, d, (rows, nb))).astype(np.float16)
        raw[..., at : at + 2] = halves.view(np.uint8).reshape(rows, nb, 2)
    return raw.reshape(rows, nb * block_bytes)


# A tiny Llama: every width a multiple of 256, so the K-quants fit; tensor types chosen to cover every format.
TINY = dict(hidden=256, ffn=512, layers=2, heads=4, kv_heads=2, vocab=320)
TINY_TYPES = {
    "attn_q": GGMLType.Q4_K, "attn_k": GGMLType.Q5_K, "attn_v": GGMLType.Q6_K, "attn_output": GGMLType.Q4_1,
    "ffn_gate": GGMLType.Q4_0, "ffn_up": GGMLType.Q3_K, "ffn_down": GGMLType.Q2_K,
}
LAYER1_TYPES = {"attn_q": GGMLType.Q5_0, "attn_k": GGMLType.Q5_1, "ffn_gate": GGMLType.Q8_0}


def write_tiny_llama_gguf(path: Path, table: GGMLType = GGMLType.Q8_0, head: GGMLType | None = None) -> Path:
    """A 2-layer Llama GGUF: layer 0 in TINY_TYPES, layer 1 with LAYER1_TYPES swapped in; norms F32. `head` None
    ties the output head to `table` (no output.weight, as SmolLM2's file)."""
    import gguf

    t = TINY
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(t["layers"])
    w.add_context_length(64)
    w.add_embedding_length(t["hidden"])
    w.add_feed_forward_length(t["ffn"])
    w.add_head_count(t["heads"])
    w.add_head_count_kv(t["kv_heads"])
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(t["vocab"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    rng = np.random.default_rng(1)

    def quant(name: str, kind: GGMLType, rows: int, K: int, seed: int) -> None:
        w.add_tensor(name, random_blocks(kind, rows, K, seed), raw_dtype=gguf.GGMLQuantizationType(kind.value))

    def norm(name: str) -> None:
        w.add_tensor(name, rng.uniform(0.5, 1.5, t["hidden"]).astype(np.float32))

    H, F, kv = t["hidden"], t["ffn"], t["hidden"] // t["heads"] * t["kv_heads"]
    quant("token_embd.weight", table, t["vocab"], H, 0)
    if head is not None:
        quant("output.weight", head, t["vocab"], H, 99)
    norm("output_norm.weight")
    shapes = {"attn_q": (H, H), "attn_k": (kv, H), "attn_v": (kv, H), "attn_output": (H, H),
              "ffn_gate": (F, H), "ffn_up": (F, H), "ffn_down": (H, F)}
    for i in range(t["layers"]):
        types = TINY_TYPES | (LAYER1_TYPES if i == 1 else {})
        for j, (part, (rows, K)) in enumerate(shapes.items()):
            quant(f"blk.{i}.{part}.weight", types[part], rows, K, 10 * i + j + 1)
        norm(f"blk.{i}.attn_norm.weight")
        norm(f"blk.{i}.ffn_norm.weight")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
