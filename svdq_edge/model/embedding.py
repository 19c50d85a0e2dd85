"""Block-quantized token embeddings: the PyTorch reference of ONNX Runtime's `com.microsoft::GatherBlockQuantized`.

The table E [vocab, hidden] is quantized row-wise in blocks along `hidden`, the same packing as a MatMulNBits
weight (rows play the role of N). Rows are gathered, then dequantized: E_hat[i] = (codes[i] - zero) * scale.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from svdq_edge.config import ConfigError
from svdq_edge.model.modules import module_name, set_module
from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
from svdq_edge.quant.packing import PackedWeight, pack, unpack
from svdq_edge.sources.load import ModelSourceError

EMBEDDING_BITS = (2, 4, 8)  # the widths GatherBlockQuantized reads from uint8 data


def embedding_scale(emb: nn.Module) -> float:
    """The factor an embedding multiplies its rows by (Gemma's sqrt(hidden): `embed_scale`), else 1."""
    scale = getattr(emb, "embed_scale", None)
    return 1.0 if scale is None else float(scale)


class QuantEmbedding(nn.Module):
    """nn.Embedding whose table is held as packed codes (B, scales, zero_points, as in PackedWeight); rows are
    multiplied by `scale` after the lookup (1 for most models; Gemma scales by sqrt(hidden)), the table is not, so a
    tied head can share its codes."""

    def __init__(self, packed: PackedWeight, padding_idx: int | None = None, scale: float = 1.0):
        super().__init__()
        self.num_embeddings, self.embedding_dim = packed.N, packed.K
        self.bits, self.block_size, self.padding_idx = packed.bits, packed.block_size, padding_idx
        self.scale = float(scale)
        self.register_buffer("B", packed.B)
        self.register_buffer("scales", packed.scales)
        self.register_buffer("zero_points", packed.zero_points)
        self._E: Tensor | None = None

    @property
    def packed(self) -> PackedWeight:
        return PackedWeight(self.B, self.scales, self.zero_points, self.embedding_dim, self.num_embeddings,
                            self.bits, self.block_size)

    def table(self) -> Tensor:
        """The dequantized table E_hat [vocab, hidden] (built once)."""
        if self._E is None or self._E.device != self.B.device:
            self._E = dequantize_blockwise(unpack(self.packed)).to(self.B.device)
        return self._E

    @property
    def weight(self) -> Tensor:  # what code reading `embed.weight` (tied heads, resize checks) expects
        return self.table()

    def forward(self, ids: Tensor) -> Tensor:
        rows = nn.functional.embedding(ids, self.table(), self.padding_idx)
        return rows if self.scale == 1.0 else rows * self.scale

    def layer_meta(self) -> dict:
        return {"kind": "embedding", "num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "bits": self.bits, "block_size": self.block_size, "padding_idx": self.padding_idx,
                "scale": self.scale}

    @classmethod
    def from_tensors(cls, meta: dict, tensors: dict[str, Tensor]) -> QuantEmbedding:
        packed = PackedWeight(tensors["B"], tensors["scales"], tensors["zero_points"], meta["embedding_dim"],
                              meta["num_embeddings"], meta["bits"], meta["block_size"])
        return cls(packed, meta["padding_idx"], meta.get("scale", 1.0))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, bits={self.bits}, block={self.block_size}"


def quantize_embedding_table(E: Tensor, bits: int, block_size: int, symmetric: bool = False,
                             clip: bool = False) -> PackedWeight:
    """Pack E [vocab, hidden]; hidden must be a multiple of block_size (GatherBlockQuantized has no padding)."""
    if bits not in EMBEDDING_BITS:
        raise ConfigError(f"embedding bits must be one of {EMBEDDING_BITS}, got {bits}")
    if E.shape[1] % block_size:
        raise ConfigError(f"embedding width {E.shape[1]} is not a multiple of block_size {block_size}")
    if not torch.isfinite(E).all():
        raise ModelSourceError("embedding table contains NaN or Inf")
    return pack(quantize_blockwise(E.detach().float(), bits, block_size, symmetric=symmetric, clip=clip))


def quantize_input_embedding(model: nn.Module, bits: int, block_size: int, symmetric: bool = False,
                             clip: bool = False) -> tuple[str, QuantEmbedding]:
    """Replace the model's input token embedding (in place); a tied output head keeps using the same values."""
    W = model.get_input_embeddings().weight
    return install_input_embedding(model, quantize_embedding_table(W, bits, block_size, symmetric, clip))


def install_input_embedding(model: nn.Module, packed: PackedWeight) -> tuple[str, QuantEmbedding]:
    """Swap the input embedding for a QuantEmbedding of `packed` (its padding row and scale kept); a head tied to
    the old table gets its own copy of the dequantized one. Used by the in-memory and the lazy quantize."""
    emb = model.get_input_embeddings()
    name = module_name(model, emb)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    tied = head is not None and getattr(head, "weight", None) is emb.weight  # a quantized head is no longer tied
    q = QuantEmbedding(packed, emb.padding_idx, embedding_scale(emb))
    set_module(model, name, q)
    if tied:
        # The head multiplies by the same (dequantized) table the input side gathers from.
        head.weight = nn.Parameter(q.table().clone(), requires_grad=False)
    return name, q
