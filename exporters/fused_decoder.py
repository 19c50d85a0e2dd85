"""A fused decoder graph built from the Hugging Face config and our modules, with no trace.

One method per graph piece (mask, rotary caches, embedding, norms, attention, MLP, head), in the layout
onnxruntime-genai uses, so the folder runs in onnxruntime-genai with a shared past/present KV buffer:

  inputs   input_ids int64 [batch, sequence_length]
           attention_mask int64 [batch, total_sequence_length]
           past_key_values.{i}.key / .value float32 [batch, kv_heads, past_sequence_length, head_dim]
  outputs  logits float32 [batch, sequence_length, vocab]
           present.{i}.key / .value float32 [batch, kv_heads, total_sequence_length, head_dim]

Per layer: SkipSimplifiedLayerNormalization (residual add + RMSNorm in one op), q/k/v as one MatMulNBits (rows
concatenated, see svdq_edge/concat.py) + our FP32 correction, GroupQueryAttention with the rotary embedding inside
(cos/sin caches from the model's own rotary module) and Mistral's sliding window as `local_window_size`, then
gate/up MatMulNBits, SiLU as Sigmoid·Mul, down MatMulNBits. Positions come from the attention mask inside
GroupQueryAttention (seqlens_k = attended tokens - 1), so there is no position_ids input.

Linears are QuantLinear (MatMulNBits + correction), or nn.Linear for layers left in FP32 (MatMul). A head that
shares its packed codes with a GatherBlockQuantized embedding reads the same initializer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from svdq_edge.concat import can_concat, concat_rows
from svdq_edge.embedding import QuantEmbedding
from svdq_edge.exporters.embedding import quant_embedding_fragment
from svdq_edge.exporters.external import ExternalData
from svdq_edge.exporters.linear import (
    MS_DOMAIN,
    Accumulate,
    OnnxFragment,
    _np,
    has_default_zero_points,
    quant_linear_fragment,
)
from svdq_edge.modules import QuantLinear

FUSED_FAMILIES = ("llama", "mistral", "qwen2")
OPSET = 21
UNSUPPORTED_ROPE = ("dynamic", "longrope")  # cos/sin depend on the sequence length: no fixed cache


class FusedUnsupported(ValueError):
    """The model has a feature the fused builder does not cover; the traced path handles it."""


def fused_unsupported_reason(config) -> str | None:
    """Why this config cannot take the fused path (None when it can)."""
    kind = getattr(config, "model_type", None)
    if kind not in FUSED_FAMILIES:
        return f"model type {kind!r} has no fused builder (fused: {', '.join(FUSED_FAMILIES)})"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation {config.hidden_act!r} (fused: silu)"
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) in UNSUPPORTED_ROPE:
        return f"rope type {rope.get('rope_type', rope.get('type'))!r} needs position-dependent caches"
    if kind == "qwen2" and getattr(config, "use_sliding_window", False):
        return "Qwen2 with per-layer sliding windows"
    if getattr(config, "partial_rotary_factor", 1.0) != 1.0:
        return "partial rotary embeddings"
    return None


@dataclass
class DecoderShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int
    eps: float
    window: int  # GroupQueryAttention local_window_size (-1: full attention)

    @classmethod
    def of(cls, config) -> DecoderShape:
        heads = config.num_attention_heads
        window = getattr(config, "sliding_window", None) if config.model_type == "mistral" else None
        return cls(config.num_hidden_layers, config.hidden_size, heads,
                   getattr(config, "num_key_value_heads", None) or heads,
                   getattr(config, "head_dim", None) or config.hidden_size // heads, config.vocab_size,
                   config.max_position_embeddings, float(config.rms_norm_eps), int(window) if window else -1)


@dataclass
class FusedDecoder:
    """The built graph and what the export report needs about it."""

    model: onnx.ModelProto
    layers: dict[str, dict] = field(default_factory=dict)  # emitted layer name -> kind, shape, bits, ...
    quant_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # MatMulNBits layers: [N, K]
    embedding_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # quantized tables


class FusedDecoderBuilder:
    """Builds the graph of a Llama-family causal LM whose linears may be QuantLinear."""

    def __init__(self, model: nn.Module, accuracy_level: int = 0, element_form: str = "auto",
                 external: ExternalData | None = None):
        """`external`: where initializers go as they are made (None keeps them inside the protobuf)."""
        reason = fused_unsupported_reason(model.config)
        if reason is not None:
            raise FusedUnsupported(reason)
        self.model, self.accuracy_level, self.element_form = model, accuracy_level, element_form
        self.s = DecoderShape.of(model.config)
        self.make_tensor = None if external is None else external.tensor
        self.f = OnnxFragment(make_tensor=self.make_tensor)
        self.out = FusedDecoder(onnx.ModelProto())

    # -- graph pieces -------------------------------------------------------------------------------------------
    def build(self) -> FusedDecoder:
        seqlens_k, total_len = self.make_attention_mask_reformat()
        self.make_token_shape()
        self.make_rotary_caches()
        x = self.make_embedding()
        base = self.model.model
        normed = self.make_norm("model.layers.0.input_layernorm", base.layers[0].input_layernorm, x)
        residual = x
        for i, layer in enumerate(base.layers):
            p = f"model.layers.{i}"
            attn = self.make_attention(i, layer.self_attn, normed, seqlens_k, total_len)
            normed, residual = self.make_skip_norm(f"{p}.post_attention_layernorm", layer.post_attention_layernorm,
                                                   residual, attn)
            mlp = self.make_mlp(p + ".mlp", layer.mlp, normed)
            last = i + 1 == self.s.layers
            name, norm = ("model.norm", base.norm) if last else (f"model.layers.{i + 1}.input_layernorm",
                                                                  base.layers[i + 1].input_layernorm)
            normed, residual = self.make_skip_norm(name, norm, residual, mlp, need_sum=not last)
        self.make_lm_head(normed)
        self.out.model = self.make_model()
        return self.out

    def make_attention_mask_reformat(self) -> tuple[str, str]:
        """seqlens_k int32 [batch] = attended tokens - 1; total_sequence_length int32 scalar = mask width."""
        f = self.f
        one = f.init("/model/constants/int64_1", np.array([1], dtype=np.int64))
        (tokens,) = f.node("ReduceSum", ["attention_mask", one], ["/model/mask/tokens"], keepdims=0)
        (last,) = f.node("Sub", [tokens, one], ["/model/mask/last"])
        (seqlens,) = f.node("Cast", [last], ["/model/mask/seqlens_k"], to=TensorProto.INT32)
        (shape,) = f.node("Shape", ["attention_mask"], ["/model/mask/shape"])
        idx = f.init("/model/constants/int64_scalar_1", np.array(1, dtype=np.int64))
        (width,) = f.node("Gather", [shape, idx], ["/model/mask/width"], axis=0)
        (total,) = f.node("Cast", [width], ["/model/mask/total_sequence_length"], to=TensorProto.INT32)
        return seqlens, total

    def make_token_shape(self) -> None:
        """`/model/tokens_3d` int64 [3] = [batch, sequence, -1]: the token stream runs 2D ([tokens, hidden], so a
        correction is one Gemm accumulating into its MatMulNBits output) and is reshaped to 3D only where
        GroupQueryAttention and the logits need it."""
        (shape,) = self.f.node("Shape", ["input_ids"], ["/model/tokens/shape"])
        minus1 = self.f.init("/model/constants/int64_-1", np.array([-1], dtype=np.int64))
        self.f.node("Concat", [shape, minus1], ["/model/tokens_3d"], axis=0)
        self.f.init("/model/constants/rows_2d", np.array([-1, self.s.hidden], dtype=np.int64))
        self.f.init("/model/constants/attn_2d", np.array([-1, self.s.heads * self.s.head_dim], dtype=np.int64))

    def make_rotary_caches(self) -> None:
        """cos_cache / sin_cache float32 [max_positions, head_dim / 2] from the model's rotary module."""
        rope = self.model.model.rotary_emb
        inv_freq = rope.inv_freq.detach().float().cpu()
        t = torch.arange(self.s.max_positions, dtype=torch.float32)
        freqs = torch.outer(t, inv_freq)
        scale = float(getattr(rope, "attention_scaling", 1.0))
        self.f.init("cos_cache", _np(freqs.cos() * scale))
        self.f.init("sin_cache", _np(freqs.sin() * scale))

    def make_embedding(self) -> str:
        """Token embeddings as [tokens, hidden]."""
        y = self._embedding_3d()
        return self.f.node("Reshape", [y, "/model/constants/rows_2d"], ["/model/embed_tokens/output_2d"])[0]

    def _embedding_3d(self) -> str:
        emb = self.model.get_input_embeddings()
        y = "/model/embed_tokens/output"
        if isinstance(emb, QuantEmbedding):
            shared = _shares_codes(self.model.get_output_embeddings(), emb)
            if shared:
                self._shared_embedding(emb, y)
            else:
                self._extend(quant_embedding_fragment("model.embed_tokens", emb.packed, "input_ids", y,
                                                      self.make_tensor))
                self.out.embedding_shapes["model.embed_tokens"] = (emb.num_embeddings, emb.embedding_dim)
            self.out.layers["model.embed_tokens"] = {"kind": "embedding", "shape": [emb.num_embeddings,
                                                     emb.embedding_dim], "bits": emb.bits,
                                                     "block_size": emb.block_size, "op": "GatherBlockQuantized",
                                                     "shared_with_head": shared}
            return y
        table = self.f.init("model.embed_tokens.weight", _np(emb.weight.float()))
        self.f.node("Gather", [table, "input_ids"], [y], axis=0)
        return y

    def make_norm(self, name: str, norm: nn.Module, x: str) -> str:
        gamma = self.f.init(f"{name}.weight", _np(norm.weight.float()))
        (y,) = self.f.node("SimplifiedLayerNormalization", [x, gamma], [f"/{name}/output_0"], axis=-1,
                           epsilon=self.s.eps, stash_type=1)
        return y

    def make_skip_norm(self, name: str, norm: nn.Module, residual: str, x: str,
                       need_sum: bool = True) -> tuple[str, str]:
        """(RMSNorm(residual + x), residual + x) in one SkipSimplifiedLayerNormalization."""
        gamma = self.f.init(f"{name}.weight", _np(norm.weight.float()))
        outs = [f"/{name}/output_0", "", "", f"/{name}/output_3"] if need_sum else [f"/{name}/output_0"]
        self.f.nodes.append(helper.make_node("SkipSimplifiedLayerNormalization", [residual, x, gamma], outs,
                                             name=f"/{name}/SkipSimplifiedLayerNormalization", domain=MS_DOMAIN,
                                             epsilon=self.s.eps))
        return outs[0], outs[-1]

    def make_attention(self, i: int, attn: nn.Module, x: str, seqlens_k: str, total_len: str) -> str:
        p = f"model.layers.{i}.self_attn"
        s = self.s
        qkv = [attn.q_proj, attn.k_proj, attn.v_proj]
        if self._packable(qkv):
            q_k_v = [self._to_3d(self.make_linear(f"{p}.qkv_proj", qkv, x)[0]), "", ""]
        else:  # separate q, k, v inputs (GroupQueryAttention takes either form)
            q_k_v = [self._to_3d(self.make_linear(f"{p}.{n}_proj", [m], x)[0]) for n, m in zip("qkv", qkv, strict=True)]
        out = f"/{p}/GroupQueryAttention/output_0"
        self.f.nodes.append(helper.make_node(
            "GroupQueryAttention",
            [*q_k_v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens_k, total_len, "cos_cache",
             "sin_cache"],
            [out, f"present.{i}.key", f"present.{i}.value"], name=f"/{p}/GroupQueryAttention", domain=MS_DOMAIN,
            num_heads=s.heads, kv_num_heads=s.kv_heads, scale=float(s.head_dim ** -0.5), local_window_size=s.window,
            do_rotary=1, rotary_interleaved=0))
        (out2d,) = self.f.node("Reshape", [out, "/model/constants/attn_2d"], [f"/{p}/GroupQueryAttention/2d"])
        return self.make_linear(f"{p}.o_proj", [attn.o_proj], out2d)[0]

    def _to_3d(self, x: str) -> str:
        return self.f.node("Reshape", [x, "/model/tokens_3d"], [x + "_3d"])[0]

    def make_mlp(self, p: str, mlp: nn.Module, x: str) -> str:
        pair = [mlp.gate_proj, mlp.up_proj]
        if self._packable(pair):  # one MatMulNBits and one correction for both, then a Split
            (gate_up,) = self.make_linear(f"{p}.gate_up_proj", pair, x)
            gate, up = f"/{p}/gate_proj/output_0", f"/{p}/up_proj/output_0"
            self.f.nodes.append(helper.make_node("Split", [gate_up], [gate, up], name=f"/{p}/Split", axis=-1,
                                                 num_outputs=2))
        else:
            (gate,) = self.make_linear(f"{p}.gate_proj", [mlp.gate_proj], x)
            (up,) = self.make_linear(f"{p}.up_proj", [mlp.up_proj], x)
        (sig,) = self.f.node("Sigmoid", [gate], [f"/{p}/act/Sigmoid"])
        (act,) = self.f.node("Mul", [gate, sig], [f"/{p}/act/Mul"])
        (h,) = self.f.node("Mul", [act, up], [f"/{p}/Mul"])
        return self.make_linear(f"{p}.down_proj", [mlp.down_proj], h)[0]

    def make_lm_head(self, x: str) -> None:
        head = self.model.get_output_embeddings()
        emb = self.model.get_input_embeddings()
        if isinstance(head, nn.Linear) and isinstance(emb, nn.Embedding) and head.weight is emb.weight:
            # Tied FP32 head: MatMul by the transposed table, which ORT folds at load; the file holds it once.
            (wt,) = self.f.node("Transpose", ["model.embed_tokens.weight"], ["lm_head.weight_T"], perm=[1, 0])
            (y,) = self.f.node("MatMul", [x, wt], ["/lm_head/output_0"])
        else:
            (y,) = self.make_linear("lm_head", [head], x)
        self.f.node("Reshape", [y, "/model/tokens_3d"], ["logits"])

    # -- linears ------------------------------------------------------------------------------------------------
    def make_linear(self, name: str, modules: list[nn.Module], x: str, y: str | None = None) -> list[str]:
        """y = x @ W^T + b for one module, or for several stacked along N (they must all be QuantLinear or all
        nn.Linear)."""
        y = y or f"/{name}/output_0"
        bias = _stacked_bias(modules)
        if all(isinstance(m, QuantLinear) for m in modules):
            mixed = concat_rows([m.mixed for m in modules]) if len(modules) > 1 else modules[0].mixed
            self._extend(quant_linear_fragment(name, mixed, x, y, self.element_form, self.accuracy_level, bias,
                                               Accumulate.GEMM_2D, self.make_tensor))
            p = mixed.packed
            self.out.quant_shapes[name] = (p.N, p.K)
            self.out.layers[name] = {"kind": "linear", "shape": [p.N, p.K], "bits": p.bits,
                                     "block_size": p.block_size, "structure": modules[0].structure,
                                     "bits_per_weight": round(mixed.bits_per_weight(), 4),
                                     "op": "MatMulNBits", "modules": len(modules)}
            return [y]
        W = torch.cat([m.weight.detach().float() for m in modules])  # [N, K]
        w = self.f.init(f"{name}.weight_T", _np(W.T.contiguous()))
        if bias is None:
            self.f.node("MatMul", [x, w], [y])
            return [y]
        (mm,) = self.f.node("MatMul", [x, w], [f"/{name}/MatMul"])
        self.f.node("Add", [mm, self.f.init(f"{name}.bias", bias)], [y])
        return [y]

    def _packable(self, modules: list[nn.Module]) -> bool:
        if all(isinstance(m, QuantLinear) for m in modules):
            return can_concat([m.mixed for m in modules])
        return all(type(m) is nn.Linear for m in modules)

    def _shared_embedding(self, emb: QuantEmbedding, y: str) -> None:
        """GatherBlockQuantized reading the head's MatMulNBits initializers through Reshapes ORT folds at load."""
        p = emb.packed
        bits = p.fmt.value
        f = self.f
        shape = f.init("/model/embed_tokens/data_shape", np.array([p.N, -1], dtype=np.int64))
        (data,) = f.node("Reshape", [f"lm_head.weight_Q{bits}", shape], ["/model/embed_tokens/data"])
        (scales,) = f.node("Reshape", ["lm_head.weight_scales", shape], ["/model/embed_tokens/scales"])
        inputs = [data, "input_ids", scales]
        if not has_default_zero_points(p):  # GatherBlockQuantized, like MatMulNBits, defaults to 2^(bits-1)
            inputs += f.node("Reshape", ["lm_head.weight_zp", shape], ["/model/embed_tokens/zero_points"])
        f.node("GatherBlockQuantized", inputs, [y], domain=MS_DOMAIN, gather_axis=0, quantize_axis=1,
               block_size=p.block_size, bits=bits)

    def _extend(self, frag: OnnxFragment) -> None:
        self.f.nodes.extend(frag.nodes)
        self.f.initializers.extend(frag.initializers)

    # -- model --------------------------------------------------------------------------------------------------
    def make_model(self) -> onnx.ModelProto:
        s = self.s
        kv = ["batch_size", s.kv_heads, "past_sequence_length", s.head_dim]
        present = ["batch_size", s.kv_heads, "total_sequence_length", s.head_dim]
        inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"]),
                  helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                                ["batch_size", "total_sequence_length"])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                 ["batch_size", "sequence_length", s.vocab])]
        for i in range(s.layers):
            for kind in ("key", "value"):
                inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", TensorProto.FLOAT, kv))
                outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT, present))
        graph = helper.make_graph(self.f.nodes, "svdq_edge_fused_decoder", inputs, outputs,
                                  initializer=self.f.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                       helper.make_opsetid(MS_DOMAIN, 1)], producer_name="svdq-edge")


def _stacked_bias(modules: list[nn.Module]) -> np.ndarray | None:
    """float32 [sum N]: the modules' biases stacked (zeros for a module without one); None when none has one."""
    if all(m.bias is None for m in modules):
        return None
    parts = [m.bias.detach().float() if m.bias is not None else torch.zeros(_out_features(m)) for m in modules]
    return _np(torch.cat(parts))


def _out_features(m: nn.Module) -> int:
    return m.out_features


def _shares_codes(head: nn.Module | None, emb: QuantEmbedding) -> bool:
    """The head is a plain MatMulNBits (no correction, no bias) over exactly the embedding's packed table."""
    if not isinstance(head, QuantLinear) or head.structure is not None or head.bias is not None:
        return False
    if all(getattr(head, t) is getattr(emb, t) for t in ("B", "scales", "zero_points")):
        return True  # one table held by both modules (quantized that way): nothing to compare
    return (head.bits == emb.bits and head.block_size == emb.block_size and head.B.shape == emb.B.shape
            and bool(torch.equal(head.B, emb.B)) and bool(torch.equal(head.scales, emb.scales))
            and bool(torch.equal(head.zero_points, emb.zero_points)))
