"""Fused graph of the Llama family (Llama, Mistral, Qwen2): RMSNorm, rotary attention, SwiGLU.

Per layer: SkipSimplifiedLayerNormalization (residual add + RMSNorm in one op), q/k/v as one MatMulNBits (rows
concatenated: exact, quant/concat.py) + our FP32 correction, GroupQueryAttention with the rotary embedding inside
(cos/sin caches from the model's own rotary module) and Mistral's sliding window as `local_window_size`, o_proj,
gate/up as one MatMulNBits + Split, SiLU as Sigmoid·Mul, down_proj. Qwen2's q/k/v biases go into MatMulNBits.
"""

from __future__ import annotations

import torch
from onnx import helper
from torch import nn

from svdq_edge.exporters.fused.base import ROWS_2D, DecoderBuilder
from svdq_edge.exporters.onnx.linear import MS_DOMAIN, _np

UNSUPPORTED_ROPE = ("dynamic", "longrope")  # cos/sin depend on the sequence length: no fixed cache


class LlamaBuilder(DecoderBuilder):
    """Llama, Mistral and Qwen2 causal LMs whose linears may be QuantLinear."""

    @classmethod
    def unsupported_reason(cls, config) -> str | None:
        if getattr(config, "hidden_act", "silu") != "silu":
            return f"activation {config.hidden_act!r} (fused: silu)"
        rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
        kind = rope.get("rope_type", rope.get("type", "default"))
        if kind in UNSUPPORTED_ROPE:
            return f"rope type {kind!r} needs position-dependent caches"
        if config.model_type == "qwen2" and getattr(config, "use_sliding_window", False):
            return "Qwen2 with per-layer sliding windows"
        if getattr(config, "partial_rotary_factor", 1.0) != 1.0:
            return "partial rotary embeddings"
        return None

    def make_embeddings(self) -> str:
        self.make_rotary_caches()
        emb = self.make_token_embedding("model.embed_tokens", self.model.model.embed_tokens,
                                        "/model/embed_tokens/output")
        return self.f.node("Reshape", [emb, ROWS_2D], ["/model/embed_tokens/output_2d"])[0]

    @property
    def eps(self) -> float:
        return float(self.model.config.rms_norm_eps)

    def make_rotary_caches(self) -> None:
        """cos_cache / sin_cache float32 [max_positions, head_dim / 2] from the model's rotary module."""
        rope = self.model.model.rotary_emb
        inv_freq = rope.inv_freq.detach().float().cpu()
        freqs = torch.outer(torch.arange(self.s.max_positions, dtype=torch.float32), inv_freq)
        scale = float(getattr(rope, "attention_scaling", 1.0))
        self.f.init("cos_cache", _np(freqs.cos() * scale))
        self.f.init("sin_cache", _np(freqs.sin() * scale))

    def make_norm(self, name: str, norm: nn.Module, x: str) -> str:
        gamma = self.f.init(f"{name}.weight", _np(norm.weight.float()))
        (y,) = self.f.node("SimplifiedLayerNormalization", [x, gamma], [f"/{name}/output_0"], axis=-1,
                           epsilon=self.eps, stash_type=1)
        return y

    def make_skip_norm(self, name: str, norm: nn.Module, residual: str, x: str,
                       need_sum: bool = True) -> tuple[str, str]:
        """(RMSNorm(residual + x), residual + x) in one SkipSimplifiedLayerNormalization."""
        gamma = self.f.init(f"{name}.weight", _np(norm.weight.float()))
        outs = [f"/{name}/output_0", "", "", f"/{name}/output_3"] if need_sum else [f"/{name}/output_0"]
        self.f.nodes.append(helper.make_node("SkipSimplifiedLayerNormalization", [residual, x, gamma], outs,
                                             name=f"/{name}/SkipSimplifiedLayerNormalization", domain=MS_DOMAIN,
                                             epsilon=self.eps))
        return outs[0], outs[-1]

    def make_attention(self, i: int, attn: nn.Module, x: str, seqlens_k: str, total_len: str) -> str:
        p = f"model.layers.{i}.self_attn"
        qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
        if self.packable(qkv):
            q_k_v = [self.to_3d(self.make_linear(f"{p}.qkv_proj", qkv, x)[0]), "", ""]
        else:  # separate q, k, v inputs (GroupQueryAttention takes either form)
            q_k_v = [self.to_3d(self.make_linear(f"{p}.{n}_proj", [m], x)[0]) for n, m in zip("qkv", qkv, strict=True)]
        cfg = self.model.config
        window = getattr(cfg, "sliding_window", None) if cfg.model_type == "mistral" else None
        out = self.make_gqa(i, p, q_k_v, seqlens_k, total_len, rotary=True, window=int(window) if window else -1)
        return self.make_linear(f"{p}.o_proj", [attn.o_proj], out)[0]

    def make_mlp(self, p: str, mlp: nn.Module, x: str) -> str:
        gate, up = self.make_gate_up(p, mlp, x)
        (h,) = self.f.node("Mul", [self.make_activation(p, gate), up], [f"/{p}/Mul"])
        return self.make_linear(f"{p}.down_proj", [mlp.down_proj], h)[0]

    def make_gate_up(self, p: str, mlp: nn.Module, x: str) -> tuple[str, str]:
        pair = [mlp.gate_proj, mlp.up_proj]
        if self.packable(pair):  # one MatMulNBits and one correction for both, then a Split
            (gate_up,) = self.make_linear(f"{p}.gate_up_proj", pair, x)
            gate, up = f"/{p}/gate_proj/output_0", f"/{p}/up_proj/output_0"
            self.f.nodes.append(helper.make_node("Split", [gate_up], [gate, up], name=f"/{p}/Split", axis=-1,
                                                 num_outputs=2))
            return gate, up
        (gate,) = self.make_linear(f"{p}.gate_proj", [mlp.gate_proj], x)
        (up,) = self.make_linear(f"{p}.up_proj", [mlp.up_proj], x)
        return gate, up

    def make_activation(self, p: str, gate: str) -> str:
        """SiLU as Sigmoid·Mul."""
        (sig,) = self.f.node("Sigmoid", [gate], [f"/{p}/act/Sigmoid"])
        return self.f.node("Mul", [gate, sig], [f"/{p}/act/Mul"])[0]
