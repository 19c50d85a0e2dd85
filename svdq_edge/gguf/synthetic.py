"""Synthetic Llama-architecture GGUF files of any size: random weights on a GGML grid, SmolLM2's tokenizer.

The decoder benchmark needs models of the sizes users ship (0.5-3 B parameters) where only 135M and 270M real ones
exist here. Speed depends on shapes and formats, not on trained values, so random weights serve; quality does not
(perplexity of a random model means nothing), so the benchmark compares their logits with llama.cpp's instead.

Linears are Q4_0 (random normal weights quantized by the gguf package's own Q4_0 writer) or Q4_K (random codes:
the gguf package has no Q4_K writer, and every bit pattern of a Q4_K block is a valid one, so the scales and
4-bit codes are random bytes under chosen super-block factors d, dmin). The token table is Q8_0 and tied to the head,
as in SmolLM2's GGUF; norms are FP32 ones. The tokenizer (and every other `tokenizer.*` key) is copied from
SmolLM2's GGUF, so transformers and llama.cpp both read the file.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from svdq_edge.errors import UserError
from svdq_edge.ggml import GGMLType

WEIGHT_STD = 0.02  # of every random weight (Llama's initializer range)
# Q4_K with dmin = 7.5 d: E[d sc q] = d * 31.5 * 7.5 = E[dmin m], so weights centre on 0; with d uniform in
# (d_max / 2, d_max) their spread is about 198 d_max (tests/svdq_edge/gguf/test_synthetic.py measures it).
Q4_K_MIN_RATIO = 7.5
Q4_K_SPREAD = 198.0
# Byte ranges of each block format's FP16 factors (d, then dmin or the legacy min): random bytes elsewhere are valid
# codes and sub-block scales.
F16_FIELDS = {
    GGMLType.Q4_0: (0,), GGMLType.Q4_1: (0, 2), GGMLType.Q5_0: (0,), GGMLType.Q5_1: (0, 2), GGMLType.Q8_0: (0,),
    GGMLType.Q2_K: (80, 82), GGMLType.Q3_K: (108,), GGMLType.Q4_K: (0, 2), GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
}


class LinearType(str, Enum):
    """The GGML format of the synthetic model's linears."""

    Q4_0 = "q4_0"
    Q4_K = "q4_k"


def random_blocks(kind: GGMLType, rows: int, K: int, seed: int = 0, d: float = 0.01,
                  min_ratio: float | None = None) -> np.ndarray:
    """uint8 [rows, row bytes] of `kind`: random codes and sub-block scales, FP16 factors d uniform in (d/2, d),
    so every weight is finite and of a usable size. A second factor (K-quants' dmin, legacy Q4_1/Q5_1's min, which
    is negative: the block's minimum) is a draw of its own, or `min_ratio` times the block's d when given."""
    import gguf

    per_block, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind.value)]
    rng = np.random.default_rng(seed)
    nb = K // per_block
    raw = rng.integers(0, 256, (rows, nb, block_bytes), dtype=np.uint8)
    first = rng.uniform(d / 2, d, (rows, nb))
    for i, at in enumerate(F16_FIELDS[kind]):
        if i == 0:
            factor = first
        elif min_ratio is not None:
            factor = min_ratio * first
        else:
            sign = -1.0 if kind in (GGMLType.Q4_1, GGMLType.Q5_1) else 1.0
            factor = sign * rng.uniform(d / 2, d, (rows, nb))
        raw[..., at : at + 2] = factor.astype(np.float16).view(np.uint8).reshape(rows, nb, 2)
    return raw.reshape(rows, nb * block_bytes)


@dataclass(frozen=True)
class LlamaShape:
    """A Llama decoder's dimensions (head_dim = hidden / heads)."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    context: int = 4096

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise UserError(f"hidden {self.hidden}, heads {self.heads}, kv_heads {self.kv_heads}: heads must divide "
                            f"hidden and kv_heads must divide heads")
        if self.hidden % 256 or self.intermediate % 256:
            raise UserError("hidden and intermediate must be multiples of 256 (Q4_K super-blocks)")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """{GGUF name in block 0 with `{i}`: (out, in)} of one decoder layer's linears."""
        kv = self.kv_heads * self.head_dim
        return {"attn_q": (self.hidden, self.hidden), "attn_k": (kv, self.hidden), "attn_v": (kv, self.hidden),
                "attn_output": (self.hidden, self.hidden), "ffn_gate": (self.intermediate, self.hidden),
                "ffn_up": (self.intermediate, self.hidden), "ffn_down": (self.hidden, self.intermediate)}

    def parameters(self, vocab: int) -> int:
        per_layer = sum(o * i for o, i in self.linear_shapes().values()) + 2 * self.hidden
        return self.layers * per_layer + vocab * self.hidden + self.hidden


PRESET_VOCAB = 49152  # SmolLM2's vocabulary, whose tokenizer the synthetic models carry
# About 0.5 B and 1.5 B parameters with SmolLM2's 49152-token vocabulary (tied head), grouped-query attention;
# `tiny` (15 M, nearly all of it the token table) for tests.
PRESETS = {
    "tiny": LlamaShape(hidden=256, intermediate=512, layers=2, heads=4, kv_heads=2),
    "0.5b": LlamaShape(hidden=1536, intermediate=4096, layers=18, heads=24, kv_heads=8),
    "1.5b": LlamaShape(hidden=2048, intermediate=5632, layers=32, heads=32, kv_heads=8),
}


def linear_blocks(linear: LinearType, out: int, inp: int, seed: int) -> tuple[np.ndarray, GGMLType]:
    """(bytes uint8 [out, row bytes], type) of one random linear W [out, in] with spread WEIGHT_STD: Q4_0 by the gguf
    package's quantizer on normal weights, Q4_K as random blocks centred by Q4_K_MIN_RATIO."""
    from gguf import GGMLQuantizationType, quants

    if linear is LinearType.Q4_0:
        W = np.random.default_rng(seed).standard_normal((out, inp), dtype=np.float32) * WEIGHT_STD
        return quants.quantize(W, GGMLQuantizationType.Q4_0), GGMLType.Q4_0
    return random_blocks(GGMLType.Q4_K, out, inp, seed, d=WEIGHT_STD / Q4_K_SPREAD,
                         min_ratio=Q4_K_MIN_RATIO), GGMLType.Q4_K


def write_synthetic_gguf(path: str | Path, shape: LlamaShape, linear: LinearType, tokenizer_gguf: str | Path,
                         seed: int = 0) -> Path:
    """Write a random Llama GGUF to `path` (a hidden sibling renamed when complete, so no half-written file is left
    under the name); the same arguments write the same file. Returns the path."""
    import gguf

    linear = LinearType(linear)
    source = gguf.GGUFReader(str(tokenizer_gguf))
    vocab = len(source.fields["tokenizer.ggml.tokens"].data)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        w = gguf.GGUFWriter(str(tmp), "llama")
        w.add_name(f"synthetic-llama-{linear.value}")
        add_llama_metadata(w, shape, vocab, gguf.LlamaFileType.MOSTLY_Q4_0 if linear is LinearType.Q4_0
                           else gguf.LlamaFileType.MOSTLY_Q4_K_M)
        for key, field in source.fields.items():  # the tokenizer, copied as it is
            if key.startswith("tokenizer."):
                sub = field.types[1] if len(field.types) > 1 else None
                w.add_key_value(key, field.contents(), field.types[0], sub)
        table = np.random.default_rng(seed).standard_normal((vocab, shape.hidden), dtype=np.float32) * WEIGHT_STD
        w.add_tensor("token_embd.weight", gguf.quants.quantize(table, gguf.GGMLQuantizationType.Q8_0),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        del table
        ones = np.ones(shape.hidden, dtype=np.float32)
        w.add_tensor("output_norm.weight", ones)
        for i in range(shape.layers):
            w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
            w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
            for j, (name, (out, inp)) in enumerate(shape.linear_shapes().items()):
                codes, kind = linear_blocks(linear, out, inp, seed=seed * 100_000 + 10 * i + j + 1)
                w.add_tensor(f"blk.{i}.{name}.weight", codes, raw_dtype=gguf.GGMLQuantizationType(kind.value))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def add_llama_metadata(w, shape: LlamaShape, vocab: int, file_type) -> None:
    """The `llama.*` keys of `shape` on a gguf.GGUFWriter (file_type: a gguf.LlamaFileType)."""
    import gguf

    w.add_block_count(shape.layers)
    w.add_context_length(shape.context)
    w.add_embedding_length(shape.hidden)
    w.add_feed_forward_length(shape.intermediate)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(shape.head_dim)
    w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def describe(shape: LlamaShape, vocab: int) -> dict:
    return asdict(shape) | {"parameters": shape.parameters(vocab)}
