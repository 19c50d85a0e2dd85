"""Fused graph of BERT encoders (MiniLM and the like), built from the config and our modules with no trace.

Inputs and output as the traced export (Optimum's names): input_ids, attention_mask, token_type_ids int64 [batch,
sequence] -> last_hidden_state [batch, sequence, hidden] (feature extraction) or logits [batch, labels]
(sequence classification: CLS token, pooler dense + tanh, classifier).

  embeddings   word rows (Gather, or GatherBlockQuantized) + token-type rows + position rows, LayerNormalization
  per layer    q/k/v as one MatMulNBits + correction, Split, MultiHeadAttention (q/k/v biases, key padding mask
               from attention_mask), output dense, SkipLayerNormalization (its bias, the residual add and LayerNorm
               in one op), intermediate dense, BiasGelu (erf), output dense, SkipLayerNormalization
Each linear's bias goes into the fused op after it, where it costs nothing.
The token stream runs 2-D ([tokens, hidden]) as in the decoders, so each correction is a Gather and one Gemm.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from torch import nn

from svdq_edge.exporters.fused.base import OPSET, ROWS_2D, TOKENS_3D, DecoderBuilder, FusedDecoder
from svdq_edge.exporters.onnx.compat import make_onnx_model
from svdq_edge.exporters.onnx.linear import MS_DOMAIN, _np

ACTIVATIONS = {"gelu": "Gelu"}  # hidden_act -> com.microsoft op (erf GELU)
BIAS_ACTIVATIONS = {"Gelu": "BiasGelu"}  # the same with the preceding bias add inside


class BertBuilder(DecoderBuilder):
    """BertModel / BertForSequenceClassification whose linears may be QuantLinear."""

    @classmethod
    def unsupported_reason(cls, config) -> str | None:
        if config.hidden_act not in ACTIVATIONS:
            return f"activation {config.hidden_act!r} (fused: {', '.join(ACTIVATIONS)})"
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            return f"position embeddings {config.position_embedding_type!r}"
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return "decoder / cross-attention BERT"
        return None

    @property
    def bert(self) -> nn.Module:
        return getattr(self.model, "bert", self.model)

    @property
    def prefix(self) -> str:
        """Module-name prefix of the encoder inside the model ("bert." in a classifier)."""
        return "bert." if self.bert is not self.model else ""

    @property
    def classifier(self) -> bool:
        return hasattr(self.model, "classifier")

    def build(self) -> FusedDecoder:
        self.make_token_shape()
        mask = self.make_key_padding_mask()
        x = self.make_embeddings()
        for i, layer in enumerate(self.bert.encoder.layer):
            x = self.make_layer(i, layer, x, mask)
        if self.classifier:
            self.make_classifier(x)
        else:
            self.f.node("Reshape", [x, TOKENS_3D], ["last_hidden_state"])
        self.out.model = self.make_model()
        return self.out

    @property
    def eps(self) -> float:
        return float(self.model.config.layer_norm_eps)

    def make_key_padding_mask(self) -> str:
        """int32 [batch, sequence]: 1 where a token is attended (MultiHeadAttention's key padding mask)."""
        return self.f.node("Cast", ["attention_mask"], ["/model/mask/key_padding"], to=TensorProto.INT32)[0]

    def make_embeddings(self) -> str:
        """LayerNorm(word + token type + position rows) as [tokens, hidden]."""
        emb, f = self.bert.embeddings, self.f
        words = self.make_token_embedding(f"{self.prefix}embeddings.word_embeddings", emb.word_embeddings,
                                          "/embeddings/words")
        types = f.init("/embeddings/token_type.weight", _np(emb.token_type_embeddings.weight.float()))
        (t,) = f.node("Gather", [types, "token_type_ids"], ["/embeddings/types"], axis=0)
        (seq_len,) = f.node("Shape", ["input_ids"], ["/embeddings/seq_len"], start=1, end=2)
        zero = f.init("/embeddings/zero", np.array([0], dtype=np.int64))
        table = f.init("/embeddings/position.weight", _np(emb.position_embeddings.weight.float()))
        (pos,) = f.node("Slice", [table, zero, seq_len, zero], ["/embeddings/positions"])  # [sequence, hidden]
        (wt,) = f.node("Add", [words, t], ["/embeddings/words_types"])
        (s,) = f.node("Add", [wt, pos], ["/embeddings/sum"])  # positions broadcast over the batch
        ln = emb.LayerNorm
        name = f"{self.prefix}embeddings.LayerNorm"
        (normed,) = f.node("LayerNormalization", [s, self._w(f"{name}.weight", ln.weight),
                                                  self._w(f"{name}.bias", ln.bias)],
                           ["/embeddings/output"], axis=-1, epsilon=float(ln.eps))
        return f.node("Reshape", [normed, ROWS_2D], ["/embeddings/output_2d"])[0]

    def make_layer(self, i: int, layer: nn.Module, x: str, mask: str) -> str:
        p = f"{self.prefix}encoder.layer.{i}"
        attn = self.make_attention(i, layer.attention.self, x, mask)
        o, o_bias = self.make_linear(f"{p}.attention.output.dense", [layer.attention.output.dense], attn,
                                     carry_bias=True)
        x = self.make_skip_layer_norm(f"{p}.attention.output.LayerNorm", layer.attention.output.LayerNorm, o, x,
                                      o_bias)
        h, h_bias = self.make_linear(f"{p}.intermediate.dense", [layer.intermediate.dense], x, carry_bias=True)
        op, inputs = ACTIVATIONS[self.model.config.hidden_act], [h]
        if h_bias:  # the bias add fused into the activation
            op, inputs = BIAS_ACTIVATIONS[op], [h, h_bias]
        (act,) = self.f.node(op, inputs, [f"/{p}/intermediate/act"], domain=MS_DOMAIN)
        d, d_bias = self.make_linear(f"{p}.output.dense", [layer.output.dense], act, carry_bias=True)
        return self.make_skip_layer_norm(f"{p}.output.LayerNorm", layer.output.LayerNorm, d, x, d_bias)

    def make_attention(self, i: int, attn: nn.Module, x: str, mask: str) -> str:
        p = f"{self.prefix}encoder.layer.{i}.attention.self"
        qkv = [attn.query, attn.key, attn.value]
        bias = ""
        if self.packable(qkv):
            y, bias = self.make_linear(f"{p}.qkv", qkv, x, carry_bias=True)  # MultiHeadAttention adds the bias
            q, k, v = f"/{p}/q", f"/{p}/k", f"/{p}/v"
            self.f.nodes.append(helper.make_node("Split", [y], [q, k, v], name=f"/{p}/Split", axis=-1,
                                                 num_outputs=3))
        else:
            q, k, v = (self.make_linear(f"{p}.{n}", [getattr(attn, n)], x)[0] for n in ("query", "key", "value"))
        out = f"/{p}/MultiHeadAttention/output_0"
        self.f.nodes.append(helper.make_node(
            "MultiHeadAttention", [self.to_3d(q), self.to_3d(k), self.to_3d(v), bias, mask], [out],
            name=f"/{p}/MultiHeadAttention", domain=MS_DOMAIN, num_heads=self.s.heads,
            scale=float(self.s.head_dim ** -0.5)))
        return self.f.node("Reshape", [out, "/model/constants/attn_2d"], [f"/{p}/output_2d"])[0]

    def make_skip_layer_norm(self, name: str, ln: nn.Module, x: str, residual: str, bias: str = "") -> str:
        """LayerNorm(x + bias + residual) in one SkipLayerNormalization (the producing linear's bias inside)."""
        inputs = [x, residual, self._w(f"{name}.weight", ln.weight), self._w(f"{name}.bias", ln.bias)]
        (y,) = self.f.node("SkipLayerNormalization", inputs + ([bias] if bias else []),
                           [f"/{name}/output_0"], domain=MS_DOMAIN, epsilon=float(ln.eps))
        return y

    def make_classifier(self, x: str) -> None:
        """logits [batch, labels] = classifier(tanh(pooler(CLS row)))."""
        f = self.f
        (h3,) = f.node("Reshape", [x, TOKENS_3D], ["/pooler/tokens"])
        (cls,) = f.node("Gather", [h3, f.init("/pooler/cls", np.array(0, dtype=np.int64))], ["/pooler/cls_row"],
                        axis=1)  # [batch, hidden]
        (pooled,) = self.make_linear("bert.pooler.dense", [self.bert.pooler.dense], cls)
        (t,) = f.node("Tanh", [pooled], ["/pooler/tanh"])
        self.make_linear("classifier", [self.model.classifier], t, "logits")

    def _w(self, name: str, t) -> str:
        return self.f.init(name, _np(t.detach().float()))

    def make_model(self) -> onnx.ModelProto:
        axes = ["batch", "sequence"]
        inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, axes)
                  for n in ("input_ids", "attention_mask", "token_type_ids")]
        if self.classifier:
            outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                     ["batch", self.model.config.num_labels])]
        else:
            outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT,
                                                     [*axes, self.s.hidden])]
        graph = helper.make_graph(self.f.nodes, "svdq_edge_fused_encoder", inputs, outputs,
                                  initializer=self.f.initializers)
        return make_onnx_model(graph, OPSET)
