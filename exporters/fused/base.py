"""What every fused decoder graph shares: onnxruntime-genai's I/O, the attention-mask reformat, linears as
MatMulNBits + our FP32 correction (or FP32 MatMul), quantized or shared token tables, the LM head, the model.

  inputs   input_ids int64 [batch, sequence_length]
           attention_mask int64 [batch, total_sequence_length]
           past_key_values.{i}.key / .value float32 [batch, kv_heads, past_sequence_length, head_dim]
  outputs  logits float32 [batch, sequence_length, vocab]
           present.{i}.key / .value float32 [batch, kv_heads, total_sequence_length, head_dim]

There is no position_ids input: GroupQueryAttention derives positions from the mask (seqlens_k = attended tokens
- 1), and a family with learned positions gathers them from the same mask. The token stream runs 2-D ([tokens,
hidden]): each FP32 correction is then a Gather and one Gemm accumulating into its MatMulNBits output.
`DecoderBuilder.build` owns the layer loop of a pre-norm decoder; a family (llama.py, gemma.py, gpt2.py) names where
its pieces live (LAYERS, INPUT_NORM, ...) and overrides the graph pieces it changes (norms, attention, MLP).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from svdq_edge.errors import UserError
from svdq_edge.exporters.onnx.compat import make_onnx_model
from svdq_edge.exporters.onnx.embedding import quant_embedding_fragment
from svdq_edge.exporters.onnx.external import ExternalData
from svdq_edge.exporters.onnx.linear import (
    KERNEL_OPS,
    MS_DOMAIN,
    Accumulate,
    OnnxFragment,
    _np,
    has_default_zero_points,
    quant_linear_fragment,
    runs_split,
)
from svdq_edge.model.embedding import QuantEmbedding, embedding_scale
from svdq_edge.model.modules import QuantLinear, module_name
from svdq_edge.model.targets import linear_weight
from svdq_edge.quant.concat import can_concat, concat_rows
from svdq_edge.quant.packing import split_halves

OPSET = 21
ROWS_2D = "/model/constants/rows_2d"  # [-1, hidden]
TOKENS_3D = "/model/tokens_3d"  # [batch, sequence, -1]


class FusedUnsupported(UserError, ValueError):
    """The model has a feature the fused builders do not cover; the traced path handles it."""


@dataclass
class FusedDecoder:
    """The built graph and what the export report needs about it."""

    model: onnx.ModelProto
    layers: dict[str, dict] = field(default_factory=dict)  # emitted layer name -> kind, shape, bits, ...
    quant_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # MatMulNBits layers: [N, K]
    embedding_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)  # quantized tables


@dataclass(frozen=True)
class DecoderShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_positions: int

    @classmethod
    def of(cls, config) -> DecoderShape:
        heads = config.num_attention_heads  # GPT-2's n_head etc. reach here through its attribute_map
        return cls(config.num_hidden_layers, config.hidden_size, heads,
                   getattr(config, "num_key_value_heads", None) or heads,
                   getattr(config, "head_dim", None) or config.hidden_size // heads, config.vocab_size,
                   config.max_position_embeddings)


class DecoderBuilder:
    """The decoder's layer loop and shared pieces; a family defines `unsupported_reason` and its graph pieces."""

    @classmethod
    def unsupported_reason(cls, config) -> str | None:
        raise NotImplementedError

    def __init__(self, model: nn.Module, accuracy_level: int = 0, element_form: str = "auto",
                 external: ExternalData | None = None):
        """`external`: where initializers go as they are made (None keeps them inside the protobuf)."""
        reason = self.unsupported_reason(model.config)
        if reason is not None:
            raise FusedUnsupported(reason)
        self.model, self.accuracy_level, self.element_form = model, accuracy_level, element_form
        self.s = DecoderShape.of(model.config)
        self.make_tensor = None if external is None else external.tensor
        self.f = OnnxFragment(make_tensor=self.make_tensor)
        self.out = FusedDecoder(onnx.ModelProto())

    # Where a family's pieces live in the Hugging Face module tree (names of initializers follow them).
    LAYERS = "model.layers"  # the decoder blocks
    ATTENTION = "self_attn"  # in a block
    INPUT_NORM = "input_layernorm"  # in a block: the norm before attention
    POST_ATTENTION_NORM = "post_attention_layernorm"  # in a block: residual add + norm before the MLP
    FINAL_NORM = "model.norm"

    def build(self) -> FusedDecoder:
        """Mask and shapes, embeddings, every block (each ends in the next block's input norm), the head."""
        seqlens_k, total_len = self.make_attention_mask_reformat()
        self.make_token_shape()
        x = self.make_embeddings()  # [tokens, hidden]
        normed, residual = self.make_norm(*self.norm_before(0), x), x
        for i, layer in enumerate(self.model.get_submodule(self.LAYERS)):
            normed, residual = self.make_layer(i, layer, normed, residual, seqlens_k, total_len)
        self.make_lm_head(normed)
        self.out.model = self.make_model()
        return self.out

    def make_layer(self, i: int, layer: nn.Module, normed: str, residual: str, seqlens_k: str,
                   total_len: str) -> tuple[str, str]:
        """One block: attention, residual add + norm, MLP, residual add + the next block's input norm (the final
        norm after the last block, whose sum nobody reads). Returns (normed, residual) for the next block."""
        p = f"{self.LAYERS}.{i}"
        attn = self.make_attention(i, getattr(layer, self.ATTENTION), normed, seqlens_k, total_len)
        normed, residual = self.make_skip_norm(f"{p}.{self.POST_ATTENTION_NORM}",
                                               getattr(layer, self.POST_ATTENTION_NORM), residual, attn)
        mlp = self.make_mlp(f"{p}.mlp", layer.mlp, normed)
        return self.make_skip_norm(*self.norm_before(i + 1), residual, mlp, need_sum=i + 1 < self.s.layers)

    def norm_before(self, i: int) -> tuple[str, nn.Module]:
        """(name, module) of the norm that block i reads through; i = layers: the final norm."""
        if i == self.s.layers:
            return self.FINAL_NORM, self.model.get_submodule(self.FINAL_NORM)
        name = f"{self.LAYERS}.{i}.{self.INPUT_NORM}"
        return name, self.model.get_submodule(name)

    # -- family pieces ------------------------------------------------------------------------------------------
    def make_embeddings(self) -> str:
        """[tokens, hidden] (2-D) entering the first block."""
        raise NotImplementedError

    def make_norm(self, name: str, norm: nn.Module, x: str) -> str:
        raise NotImplementedError

    def make_skip_norm(self, name: str, norm: nn.Module, residual: str, x: str,
                       need_sum: bool = True) -> tuple[str, str]:
        """(norm(residual + x), residual + x) in one op."""
        raise NotImplementedError

    def make_attention(self, i: int, attn: nn.Module, x: str, seqlens_k: str, total_len: str) -> str:
        raise NotImplementedError

    def make_mlp(self, p: str, mlp: nn.Module, x: str) -> str:
        raise NotImplementedError

    # -- shared graph pieces ------------------------------------------------------------------------------------
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
        """TOKENS_3D int64 [3] = [batch, sequence, -1], and the constant ROWS_2D = [-1, hidden]."""
        (shape,) = self.f.node("Shape", ["input_ids"], ["/model/tokens/shape"])
        minus1 = self.f.init("/model/constants/int64_-1", np.array([-1], dtype=np.int64))
        self.f.node("Concat", [shape, minus1], [TOKENS_3D], axis=0)
        self.f.init(ROWS_2D, np.array([-1, self.s.hidden], dtype=np.int64))
        self.f.init("/model/constants/attn_2d", np.array([-1, self.s.heads * self.s.head_dim], dtype=np.int64))

    def make_token_embedding(self, name: str, emb: nn.Module, y: str) -> str:
        """y [batch, sequence, hidden] = the token rows: Gather (FP32), GatherBlockQuantized (quantized table), or
        GatherBlockQuantized over the LM head's codes when both hold the same table."""
        if isinstance(emb, QuantEmbedding):
            out, y = y, (y if emb.scale == 1.0 else "/model/embed_tokens/rows")
            shared = _shares_codes(self.model.get_output_embeddings(), emb)
            if shared:
                self._shared_embedding(emb, y)
            else:
                self._extend(quant_embedding_fragment(name, emb.packed, "input_ids", y, self.make_tensor))
                self.out.embedding_shapes[name] = (emb.num_embeddings, emb.embedding_dim)
            if emb.scale != 1.0:  # Gemma: rows times sqrt(hidden), after the lookup (the shared table is unscaled)
                scale = self.f.init("/model/embed_tokens/scale", np.array(emb.scale, dtype=np.float32))
                self.f.node("Mul", [y, scale], [out])
            self.out.layers[name] = {"kind": "embedding", "shape": [emb.num_embeddings, emb.embedding_dim],
                                     "bits": emb.bits, "block_size": emb.block_size, "op": "GatherBlockQuantized",
                                     "shared_with_head": shared}
            return out
        table = self.f.init(f"{name}.weight", _np(emb.weight.float()))
        scale = embedding_scale(emb)
        if scale == 1.0:
            return self.f.node("Gather", [table, "input_ids"], [y], axis=0)[0]
        (rows,) = self.f.node("Gather", [table, "input_ids"], ["/model/embed_tokens/rows"], axis=0)
        return self.f.node("Mul", [rows, self.f.init("/model/embed_tokens/scale", np.array(scale, np.float32))],
                           [y])[0]

    def make_gqa(self, i: int, p: str, q_k_v: list[str], seqlens_k: str, total_len: str, rotary: bool,
                 window: int = -1, caches: list[str] | None = None, scale: float | None = None) -> str:
        """GroupQueryAttention over layer i's cache; returns its output as [tokens, heads * head_dim].
        `caches`: the cos/sin cache names (default cos_cache, sin_cache); `scale`: default head_dim^-1/2."""
        s = self.s
        out = f"/{p}/GroupQueryAttention/output_0"
        caches = (caches or ["cos_cache", "sin_cache"]) if rotary else []
        scale = float(s.head_dim ** -0.5) if scale is None else scale
        self.f.nodes.append(helper.make_node(
            "GroupQueryAttention",
            [*q_k_v, f"past_key_values.{i}.key", f"past_key_values.{i}.value", seqlens_k, total_len, *caches],
            [out, f"present.{i}.key", f"present.{i}.value"], name=f"/{p}/GroupQueryAttention", domain=MS_DOMAIN,
            num_heads=s.heads, kv_num_heads=s.kv_heads, scale=scale, local_window_size=window,
            do_rotary=int(rotary), rotary_interleaved=0))
        return self.f.node("Reshape", [out, "/model/constants/attn_2d"], [f"/{p}/GroupQueryAttention/2d"])[0]

    def make_lm_head(self, x: str) -> None:
        """logits [batch, sequence, vocab] from the final normed stream x [tokens, hidden]."""
        head = self.model.get_output_embeddings()
        emb = self.model.get_input_embeddings()
        emb_name = module_name(self.model, emb)
        if isinstance(head, nn.Linear) and isinstance(emb, nn.Embedding) and head.weight is emb.weight:
            # Tied FP32 head: MatMul by the transposed table, which ORT folds at load; the file holds it once.
            (wt,) = self.f.node("Transpose", [f"{emb_name}.weight"], ["lm_head.weight_T"], perm=[1, 0])
            (y,) = self.f.node("MatMul", [x, wt], ["/lm_head/output_0"])
        else:
            (y,) = self.make_linear("lm_head", [head], x)
        self.f.node("Reshape", [y, TOKENS_3D], ["logits"])

    def to_3d(self, x: str) -> str:
        return self.f.node("Reshape", [x, TOKENS_3D], [x + "_3d"])[0]

    # -- linears ------------------------------------------------------------------------------------------------
    def make_linear(self, name: str, modules: list[nn.Module], x: str, y: str | None = None,
                    carry_bias: bool = False) -> list[str]:
        """y = x @ W^T + b for one module, or for several stacked along N (all QuantLinear or all FP32).

        `carry_bias`: leave b out and return [y, name of b's initializer or ""], for a following fused op that adds
        it for free (SkipLayerNormalization, BiasGelu, MultiHeadAttention): a bias inside DynamicQuantizeMatMul with
        per-column scales costs its output stage 2-10% (docs/encoders.md)."""
        y = y or f"/{name}/output_0"
        bias = _stacked_bias(modules)
        if not carry_bias:
            return [self._linear(name, modules, x, y, bias)]
        carried = "" if bias is None else self.f.init(f"{name}.bias", bias)
        return [self._linear(name, modules, x, y, None), carried]

    def _linear(self, name: str, modules: list[nn.Module], x: str, y: str, bias: np.ndarray | None) -> str:
        if all(isinstance(m, QuantLinear) for m in modules):
            mixed = concat_rows([m.mixed for m in modules]) if len(modules) > 1 else modules[0].mixed
            self._extend(quant_linear_fragment(name, mixed, x, y, self.element_form, self.accuracy_level, bias,
                                               Accumulate.GEMM_2D, self.make_tensor, modules[0].kernel))
            p = mixed.packed
            self.out.quant_shapes[name] = (p.N, p.K)
            self.out.layers[name] = {"kind": "linear", "shape": [p.N, p.K], "bits": p.bits,
                                     "block_size": p.block_size, "structure": modules[0].structure,
                                     "bits_per_weight": round(mixed.bits_per_weight(), 4),
                                     "op": KERNEL_OPS[modules[0].kernel], "modules": len(modules)}
            return y
        W = torch.cat([linear_weight(m).detach().float() for m in modules])  # [N, K] (Conv1D stores [K, N])
        w = self.f.init(f"{name}.weight_T", _np(W.T.contiguous()))
        if bias is None:
            self.f.node("MatMul", [x, w], [y])
            return y
        (mm,) = self.f.node("MatMul", [x, w], [f"/{name}/MatMul"])
        self.f.node("Add", [mm, self.f.init(f"{name}.bias", bias)], [y])
        return y

    def packable(self, modules: list[nn.Module]) -> bool:
        if all(isinstance(m, QuantLinear) for m in modules):
            return len({m.kernel for m in modules}) == 1 and can_concat([m.mixed for m in modules])
        return all(type(m) is nn.Linear for m in modules)

    def _shared_embedding(self, emb: QuantEmbedding, y: str) -> None:
        """GatherBlockQuantized reading the head's MatMulNBits initializers through Reshapes ORT folds at load.
        A head emitted as two 4-bit halves (linear.runs_split) gathers rows [hi | lo] and adds the halves."""
        p = emb.packed
        split = runs_split(p, self.accuracy_level)
        if split:
            p, out = split_halves(p), y
            y = "/model/embed_tokens/halves"
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
        if split:  # [batch, sequence, 2K] -> [batch, sequence, 2, K] -> hi + lo
            two = f.init("/model/embed_tokens/halves_shape", np.array([0, 0, 2, emb.embedding_dim], dtype=np.int64))
            (h,) = f.node("Reshape", [y, two], ["/model/embed_tokens/halves_4d"])
            axis = f.init("/model/embed_tokens/halves_axis", np.array([2], dtype=np.int64))
            f.node("ReduceSum", [h, axis], [out], keepdims=0)

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
        return make_onnx_model(graph, OPSET)


def _stacked_bias(modules: list[nn.Module]) -> np.ndarray | None:
    """float32 [sum N]: the modules' biases stacked (zeros for a module without one); None when none has one."""
    if all(m.bias is None for m in modules):
        return None
    parts = [m.bias.detach().float() if m.bias is not None else torch.zeros(_out_features(m)) for m in modules]
    return _np(torch.cat(parts))


def _out_features(m: nn.Module) -> int:
    return m.out_features if hasattr(m, "out_features") else m.nf  # nn.Linear / QuantLinear, or Conv1D


def _shares_codes(head: nn.Module | None, emb: QuantEmbedding) -> bool:
    """The head is a plain MatMulNBits (no correction, no bias) over exactly the embedding's packed table."""
    if not isinstance(head, QuantLinear) or head.structure is not None or head.bias is not None:
        return False
    if all(getattr(head, t) is getattr(emb, t) for t in ("B", "scales", "zero_points")):
        return True  # one table held by both modules (quantized that way): nothing to compare
    return (head.bits == emb.bits and head.block_size == emb.block_size and head.B.shape == emb.B.shape
            and bool(torch.equal(head.B, emb.B)) and bool(torch.equal(head.scales, emb.scales))
            and bool(torch.equal(head.zero_points, emb.zero_points)))
