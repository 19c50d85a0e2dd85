"""Fused graph of Gemma 3 (text): Llama's pieces plus what Gemma changes.

  - embeddings scaled by sqrt(hidden) after the lookup (base.make_token_embedding);
  - RMSNorm weights stored as w, applied as (1 + w): the gamma initializers hold 1 + w;
  - four norms per layer: input, post-attention, pre- and post-feedforward. The residual adds after the two "post"
    norms fuse with the next norm: h = r + post_attn(a) -> SkipSimplifiedLayerNormalization(r, post_attn(a)) gives
    pre_ffw(h) and h; likewise r' = h + post_ffw(m) with the next layer's input norm;
  - per-head RMSNorm of q and k before the rotary embedding (q_norm, k_norm): q/k/v stay one MatMulNBits, split,
    and each of q, k is normed as [tokens, heads, head_dim];
  - sliding-window layers (local rotary base, `local_window_size`) alternating with global ones (global rotary
    base): two cos/sin caches, computed in-graph from the inverse frequencies (ORT folds them at load, so the file
    holds 2 x head_dim / 2 floats instead of 4 x max_positions x head_dim / 2);
  - attention scale query_pre_attn_scalar^-1/2, GELU (tanh) gated MLP as FastGelu.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from torch import nn

from svdq_edge.exporters.fused.llama import LlamaBuilder
from svdq_edge.exporters.onnx.linear import MS_DOMAIN, _np

LAYER_CACHES = {"sliding_attention": "local", "full_attention": "global"}


class GemmaBuilder(LlamaBuilder):
    """Gemma 3 text causal LMs (model_type gemma3_text) whose linears may be QuantLinear."""

    @classmethod
    def unsupported_reason(cls, config) -> str | None:
        if getattr(config, "hidden_activation", None) != "gelu_pytorch_tanh":
            return f"activation {getattr(config, 'hidden_activation', None)!r} (fused: gelu_pytorch_tanh)"
        for cap in ("attn_logit_softcapping", "final_logit_softcapping"):
            if getattr(config, cap, None) is not None:
                return f"{cap} (no fused form)"
        if getattr(config, "use_bidirectional_attention", False):
            return "bidirectional attention"
        params = getattr(config, "rope_parameters", None) or {}
        for kind in set(config.layer_types):
            if kind not in LAYER_CACHES:
                return f"layer type {kind!r}"
            if (params.get(kind) or {}).get("rope_type", "default") != "default":
                return f"rope type {params[kind]['rope_type']!r} on {kind} layers"
        return None

    def make_layer(self, i: int, layer: nn.Module, normed: str, residual: str, seqlens_k: str,
                   total_len: str) -> tuple[str, str]:
        """Gemma's block norms each sublayer's output before the residual add (post_attention and
        post_feedforward norms), and the MLP's input through pre_feedforward_layernorm."""
        p = f"{self.LAYERS}.{i}"
        attn = self.make_attention(i, layer.self_attn, normed, seqlens_k, total_len)
        attn = self.make_norm(f"{p}.post_attention_layernorm", layer.post_attention_layernorm, attn)
        normed, residual = self.make_skip_norm(f"{p}.pre_feedforward_layernorm", layer.pre_feedforward_layernorm,
                                               residual, attn)
        mlp = self.make_mlp(f"{p}.mlp", layer.mlp, normed)
        mlp = self.make_norm(f"{p}.post_feedforward_layernorm", layer.post_feedforward_layernorm, mlp)
        return self.make_skip_norm(*self.norm_before(i + 1), residual, mlp, need_sum=i + 1 < self.s.layers)

    def gamma(self, name: str, norm: nn.Module) -> str:
        return self.f.init(f"{name}.weight", _np(1.0 + norm.weight.float()))  # Gemma applies (1 + w)

    def make_rotary_caches(self) -> None:
        """cos_cache_{local,global} / sin_cache_* float32 [max_positions, head_dim / 2] = cos/sin(pos * inv_freq),
        from the rotary module's per-layer-type inverse frequencies, as constant subgraphs."""
        rope = self.model.model.rotary_emb
        f = self.f
        start = f.init("/model/rotary/start", np.array(0.0, dtype=np.float32))
        limit = f.init("/model/rotary/limit", np.array(float(self.s.max_positions), dtype=np.float32))
        delta = f.init("/model/rotary/delta", np.array(1.0, dtype=np.float32))
        (pos,) = f.node("Range", [start, limit, delta], ["/model/rotary/positions"])
        (col,) = f.node("Unsqueeze", [pos, f.init("/model/rotary/axis_1", np.array([1], dtype=np.int64))],
                        ["/model/rotary/positions_col"])
        for kind, tag in LAYER_CACHES.items():
            found = _inv_freq(self.model.model, rope, kind)
            if found is None:
                continue
            inv = f.init(f"/model/rotary/{tag}_inv_freq", _np(found[0].float()[None]))
            (freqs,) = f.node("Mul", [col, inv], [f"/model/rotary/{tag}_freqs"])  # [positions, head_dim / 2]
            scale = found[1]
            for fn in ("Cos", "Sin"):
                (c,) = f.node(fn, [freqs], [f"/model/rotary/{tag}_{fn.lower()}"])
                f.node("Mul", [c, f.init(f"/model/rotary/{tag}_scale_{fn}", np.array(scale, dtype=np.float32))],
                       [f"{fn.lower()}_cache_{tag}"])

    def make_norm(self, name: str, norm: nn.Module, x: str) -> str:
        (y,) = self.f.node("SimplifiedLayerNormalization", [x, self.gamma(name, norm)], [f"/{name}/output_0"],
                           axis=-1, epsilon=self.eps, stash_type=1)
        return y

    def make_skip_norm(self, name: str, norm: nn.Module, residual: str, x: str,
                       need_sum: bool = True) -> tuple[str, str]:
        outs = [f"/{name}/output_0", "", "", f"/{name}/output_3"] if need_sum else [f"/{name}/output_0"]
        self.f.nodes.append(helper.make_node("SkipSimplifiedLayerNormalization", [residual, x, self.gamma(name, norm)],
                                             outs, name=f"/{name}/SkipSimplifiedLayerNormalization",
                                             domain=MS_DOMAIN, epsilon=self.eps))
        return outs[0], outs[-1]

    def make_head_norm(self, name: str, norm: nn.Module, x: str, heads: int) -> str:
        """RMSNorm over head_dim of x [tokens, heads * head_dim]; returns [batch, sequence, heads * head_dim]."""
        shape = self.f.init(f"/{name}/heads_shape", np.array([-1, heads, self.s.head_dim], dtype=np.int64))
        (h,) = self.f.node("Reshape", [x, shape], [f"/{name}/heads"])
        return self.to_3d(self.make_norm(name, norm, h))

    def make_attention(self, i: int, attn: nn.Module, x: str, seqlens_k: str, total_len: str) -> str:
        p = f"model.layers.{i}.self_attn"
        s = self.s
        qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
        if self.packable(qkv):
            (y,) = self.make_linear(f"{p}.qkv_proj", qkv, x)
            sizes = self.f.init(f"/{p}/qkv_sizes", np.array([s.heads * s.head_dim, s.kv_heads * s.head_dim,
                                                             s.kv_heads * s.head_dim], dtype=np.int64))
            q, k, v = f"/{p}/q", f"/{p}/k", f"/{p}/v"
            self.f.nodes.append(helper.make_node("Split", [y, sizes], [q, k, v], name=f"/{p}/Split", axis=-1))
        else:
            q, k, v = (self.make_linear(f"{p}.{n}_proj", [m], x)[0] for n, m in zip("qkv", qkv, strict=True))
        q = self.make_head_norm(f"{p}.q_norm", attn.q_norm, q, s.heads)
        k = self.make_head_norm(f"{p}.k_norm", attn.k_norm, k, s.kv_heads)
        kind = self.model.config.layer_types[i]
        window = int(self.model.config.sliding_window) if kind == "sliding_attention" else -1
        out = self.make_gqa(i, p, [q, k, self.to_3d(v)], seqlens_k, total_len, rotary=True, window=window,
                            caches=[f"cos_cache_{LAYER_CACHES[kind]}", f"sin_cache_{LAYER_CACHES[kind]}"],
                            scale=float(self.model.config.query_pre_attn_scalar) ** -0.5)
        return self.make_linear(f"{p}.o_proj", [attn.o_proj], out)[0]

    def make_activation(self, p: str, gate: str) -> str:
        return self.f.node("FastGelu", [gate], [f"/{p}/act/FastGelu"], domain=MS_DOMAIN)[0]  # GELU, tanh form


def _inv_freq(decoder: nn.Module, rope: nn.Module, kind: str):
    """(inverse frequencies [head_dim / 2], attention scaling) of one layer type, or None when the model has no such
    layers. transformers 5 keeps both types in one rotary module (`{kind}_inv_freq`); transformers 4.5x has
    `rotary_emb` (global) and `rotary_emb_local`."""
    if hasattr(rope, f"{kind}_inv_freq"):
        return getattr(rope, f"{kind}_inv_freq"), float(getattr(rope, f"{kind}_attention_scaling", 1.0))
    module = getattr(decoder, "rotary_emb_local" if kind == "sliding_attention" else "rotary_emb", None)
    if module is None or not hasattr(module, "inv_freq"):
        return None
    return module.inv_freq, float(getattr(module, "attention_scaling", 1.0))
