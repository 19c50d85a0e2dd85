"""Fused graph of GPT-2: learned positions, LayerNorm with bias, multi-head attention without rotary, GELU MLP.

Positions come from the attention mask, as in the Llama graph (no position_ids input): the new tokens' positions are
(cumsum(mask) - 1) over the last `sequence_length` columns, so the same graph serves the prompt and every step of
onnxruntime-genai's loop. Per layer: SkipLayerNormalization (residual add + LayerNorm), c_attn (q/k/v already one
linear; MatMulNBits with its bias) + our FP32 correction, GroupQueryAttention with kv heads = heads and no rotary,
c_proj, c_fc, FastGelu (the tanh form of `gelu_new`) or Gelu, c_proj.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from torch import nn

from svdq_edge.exporters.fused.base import ROWS_2D, DecoderBuilder
from svdq_edge.exporters.onnx.linear import MS_DOMAIN, _np

ACTIVATIONS = {"gelu_new": "FastGelu", "gelu_pytorch_tanh": "FastGelu", "gelu": "Gelu"}  # com.microsoft ops


class GPT2Builder(DecoderBuilder):
    """GPT-2 causal LMs (transformers' Conv1D linears) whose linears may be QuantLinear."""

    LAYERS = "transformer.h"
    ATTENTION = "attn"
    INPUT_NORM = "ln_1"
    POST_ATTENTION_NORM = "ln_2"
    FINAL_NORM = "transformer.ln_f"

    @classmethod
    def unsupported_reason(cls, config) -> str | None:
        if config.activation_function not in ACTIVATIONS:
            return f"activation {config.activation_function!r} (fused: {', '.join(ACTIVATIONS)})"
        if not getattr(config, "scale_attn_weights", True) or getattr(config, "scale_attn_by_inverse_layer_idx",
                                                                      False):
            return "attention scaling other than 1/sqrt(head_dim)"
        if getattr(config, "reorder_and_upcast_attn", False):
            return "reorder_and_upcast_attn"
        return None

    @property
    def eps(self) -> float:
        return float(self.model.config.layer_norm_epsilon)

    def make_position_ids(self) -> str:
        """int64 [batch, sequence]: each new token's position among the attended tokens (cumsum of the mask)."""
        f = self.f
        axis = f.init("/model/constants/int64_scalar_axis1", np.array(1, dtype=np.int64))
        (cum,) = f.node("CumSum", ["attention_mask", axis], ["/model/pos/cumsum"])
        (pos,) = f.node("Sub", [cum, "/model/constants/int64_1"], ["/model/pos/all"])
        (shape,) = f.node("Shape", ["input_ids"], ["/model/pos/ids_shape"])
        seq = f.init("/model/constants/int64_index_1", np.array([1], dtype=np.int64))
        (n,) = f.node("Gather", [shape, seq], ["/model/pos/new"], axis=0)
        (start,) = f.node("Neg", [n], ["/model/pos/start"])
        big = f.init("/model/constants/int64_max", np.array([np.iinfo(np.int64).max], dtype=np.int64))
        (tail,) = f.node("Slice", [pos, start, big, seq], ["/model/pos/tail"])
        zero = f.init("/model/constants/int64_0", np.array(0, dtype=np.int64))
        return f.node("Max", [tail, zero], ["/model/pos/position_ids"])[0]  # left padding: position 0

    def make_embeddings(self) -> str:
        """[tokens, hidden] = token rows + learned position rows."""
        t = self.model.transformer
        tokens = self.make_token_embedding("transformer.wte", t.wte, "/transformer/wte/output")
        wpe = self.f.init("transformer.wpe.weight", _np(t.wpe.weight.float()))
        (pos,) = self.f.node("Gather", [wpe, self.make_position_ids()], ["/transformer/wpe/output"], axis=0)
        (h,) = self.f.node("Add", [tokens, pos], ["/transformer/embeddings"])
        return self.f.node("Reshape", [h, ROWS_2D], ["/transformer/embeddings_2d"])[0]

    def _gamma_beta(self, name: str, norm: nn.Module) -> list[str]:
        return [self.f.init(f"{name}.weight", _np(norm.weight.float())),
                self.f.init(f"{name}.bias", _np(norm.bias.float()))]

    def make_norm(self, name: str, norm: nn.Module, x: str) -> str:
        (y,) = self.f.node("LayerNormalization", [x, *self._gamma_beta(name, norm)], [f"/{name}/output_0"], axis=-1,
                           epsilon=self.eps)
        return y

    def make_skip_norm(self, name: str, norm: nn.Module, residual: str, x: str,
                       need_sum: bool = True) -> tuple[str, str]:
        """(LayerNorm(residual + x), residual + x) in one SkipLayerNormalization."""
        outs = [f"/{name}/output_0", "", "", f"/{name}/output_3"] if need_sum else [f"/{name}/output_0"]
        self.f.nodes.append(helper.make_node("SkipLayerNormalization", [residual, x, *self._gamma_beta(name, norm)],
                                             outs, name=f"/{name}/SkipLayerNormalization", domain=MS_DOMAIN,
                                             epsilon=self.eps))
        return outs[0], outs[-1]

    def make_attention(self, i: int, attn: nn.Module, x: str, seqlens_k: str, total_len: str) -> str:
        p = f"transformer.h.{i}.attn"
        (qkv,) = self.make_linear(f"{p}.c_attn", [attn.c_attn], x)
        out = self.make_gqa(i, p, [self.to_3d(qkv), "", ""], seqlens_k, total_len, rotary=False)
        return self.make_linear(f"{p}.c_proj", [attn.c_proj], out)[0]

    def make_mlp(self, p: str, mlp: nn.Module, x: str) -> str:
        (h,) = self.make_linear(f"{p}.c_fc", [mlp.c_fc], x)
        op = ACTIVATIONS[self.model.config.activation_function]
        (act,) = self.f.node(op, [h], [f"/{p}/act/{op}"], domain=MS_DOMAIN)
        return self.make_linear(f"{p}.c_proj", [mlp.c_proj], act)[0]
