"""Transcode a quantized GGUF file into a quantized model, bit-exact: no FP32 copy, no second rounding.

Each quantized linear keeps its GGML codes and scales as MatMulNBits codes and scales, and its block mins (Q4_1,
K-quants) become a BlockOffsetCorrection (svdq_edge/ggml/layout.py). The token table goes to GatherBlockQuantized
when the format has no mins (Q4_0, Q8_0, ...), shared with a tied head; otherwise it is dequantized to FP32 and its
size is reported. Norms and other float tensors are read as they are.

The architecture and tokenizer come from the GGUF metadata through transformers (config and tokenizer only); the
model is a meta-device skeleton filled one tensor at a time. GGUF tensor names map to Hugging Face names through
the gguf package's name tables, and two conventions of llama.cpp's converter are undone on the way in:
  - Llama-family Q and K rows are stored with each head's rotary halves interleaved: rows are permuted back;
  - Gemma norms are stored as 1 + w: 1 is subtracted.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path

from torch import Tensor, nn
from tqdm.auto import tqdm

from svdq_edge.config import TranscodeConfig
from svdq_edge.errors import first_line
from svdq_edge.ggml import GGMLCodes
from svdq_edge.ggml.layout import permute_rows, rope_unpermute_index, row_slice, to_mixed, to_table
from svdq_edge.gguf.file import GGUFError, GGUFFile
from svdq_edge.model.embedding import QuantEmbedding, embedding_scale
from svdq_edge.model.head import install_head, output_head
from svdq_edge.model.modules import QuantLinear, module_name, set_module
from svdq_edge.model.targets import find_targets
from svdq_edge.pipeline.report import LayerReport, QuantReport
from svdq_edge.pipeline.stream import StreamError, materialize, skeleton
from svdq_edge.quant.decompose import MixedWeight
from svdq_edge.sources.load import LoadedModel, ModelTask

log = logging.getLogger(__name__)
ROPE_PERMUTED = ("llama",)  # GGUF architectures whose Q/K rows llama.cpp's converter interleaved
NORM_PLUS_ONE = ("gemma", "gemma2", "gemma3")  # ... whose norm weights it stored as 1 + w
CHECK_ROWS = 4096  # rows compared at once when checking a transcoded table against ggml's dequantization


class GGUFModel:
    """A GGUF file seen through Hugging Face names: `codes(hf)` / `floats(hf)` with the converter's layout undone."""

    def __init__(self, gguf: GGUFFile, model: nn.Module):
        self.gguf, self.arch = gguf, gguf.architecture
        self.config = model.config
        self.names = hf_to_gguf_names(model, self.arch)

    def __contains__(self, hf_name: str) -> bool:
        return self.names.get(hf_name) in self.gguf.tensors

    def kind(self, hf_name: str):
        return self.gguf.tensors[self.names[hf_name]].kind

    def codes(self, hf_name: str) -> GGMLCodes:
        c = self.gguf.codes(self.names[hf_name])
        idx = self._row_order(hf_name, c.shape[0])
        return c if idx is None else permute_rows(c, idx)

    def floats(self, hf_name: str) -> Tensor:
        W = self.gguf.floats(self.names[hf_name])
        idx = self._row_order(hf_name, W.shape[0])
        if idx is not None:
            W = W[idx]
        if self.arch in NORM_PLUS_ONE and "norm" in hf_name and hf_name.endswith(".weight"):
            W = W - 1.0
        return W.contiguous()

    def _row_order(self, hf_name: str, rows: int) -> Tensor | None:
        if self.arch not in ROPE_PERMUTED or not hf_name.endswith(".weight"):
            return None
        cfg = self.config
        if ".q_proj." in hf_name:
            return rope_unpermute_index(rows, cfg.num_attention_heads)
        if ".k_proj." in hf_name:
            return rope_unpermute_index(rows, cfg.num_key_value_heads or cfg.num_attention_heads)
        return None


def hf_to_gguf_names(model: nn.Module, arch: str) -> dict[str, str]:
    """Hugging Face parameter/buffer name -> GGUF tensor name, from the gguf package's tensor-name tables."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch_enum = next((k for k, v in MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_enum is None:
        raise GGUFError(f"GGUF architecture {arch!r} is unknown to the installed gguf package")
    table = get_tensor_name_map(arch_enum, model.config.num_hidden_layers)
    names = {}
    for hf in [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]:
        base, _, suffix = hf.rpartition(".")
        g = table.get_name(base)
        if g is not None:
            names[hf] = f"{g}.{suffix}"
    return names


def gguf_config(path: Path):
    """The Hugging Face config transformers derives from the GGUF metadata."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    except Exception as e:
        raise GGUFError(f"{path}: transformers cannot build a config from this GGUF ({first_line(e)})") from None
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the folder we write holds our own layers, not a GGUF checkpoint
    return config


def gguf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    except Exception as e:
        log.warning("%s: no tokenizer from the GGUF metadata (%s)", path, first_line(e))
        return None


def transcode_gguf(path: str | Path, progress: bool = True,
                   tokenizer: bool = True) -> tuple[LoadedModel, QuantReport]:
    """The model of a GGUF file with every quantized tensor kept exactly (see the module docstring)."""
    start = time.perf_counter()
    path = Path(path)
    gguf = GGUFFile(path)  # validates the whole file first (and keeps no parsed header: see GGUFFile)
    hf_config = gguf_config(path)
    tok = gguf_tokenizer(path) if tokenizer else None
    gc.collect()  # transformers' parse of the header is garbage now: its memory serves the tensors
    model = skeleton(hf_config, ModelTask.CAUSAL_LM)
    src = GGUFModel(gguf, model)
    report = QuantReport(TranscodeConfig(file=str(path), file_type=gguf.file_type(), types=gguf.type_counts()))
    shared = _transcode_head_and_table(model, src, report)
    linears = [n for n, _ in find_targets(model, skip=(), head_apart=True)]
    for name in tqdm(linears, desc="transcode GGUF", disable=not progress):
        key = f"{name}.weight"
        if key not in src:
            raise GGUFError(f"{path}: no tensor for {key} ({src.names.get(key, 'no GGUF name')})")
        if src.kind(key).is_float:
            continue  # stays FP32: read with the other float tensors
        module = model.get_submodule(name)
        bias = src.floats(f"{name}.bias") if module.bias is not None else None
        mixed = _linear(src, key, report, name)
        set_module(model, name, QuantLinear(mixed, bias))
    try:
        materialize(model, src.floats, src.__contains__)
    except StreamError as e:
        raise GGUFError(f"{path}: {e}") from None
    report.seconds = time.perf_counter() - start
    log.info("transcoded %s (%s) in %.1fs; table shared with head: %s", path, gguf.file_type(), report.seconds,
             shared)
    return LoadedModel(model.eval(), tok, ModelTask.CAUSAL_LM, str(path)), report


def _linear(src: GGUFModel, key: str, report: QuantReport, name: str) -> MixedWeight:
    c = src.codes(key)
    mixed = to_mixed(c)
    report.layers.append(_row(name, c, mixed))
    return mixed


def _transcode_head_and_table(model: nn.Module, src: GGUFModel, report: QuantReport) -> bool:
    """The output head and the token table. A tied head (no output tensor in the file) and the table share one
    MatMulNBits initializer when the format has no mins; returns whether they do."""
    emb = model.get_input_embeddings()
    emb_name = module_name(model, emb)
    emb_key = f"{emb_name}.weight"
    quantized_table = not src.kind(emb_key).is_float
    table = None
    if quantized_table and _plain_embedding(emb):
        c = src.codes(emb_key)
        table = to_table(c)
        if table is not None:
            report.layers.append(_row(emb_name, c, MixedWeight(table, None)))
    head = output_head(model)
    if head is not None:
        head_key = f"{head[0]}.weight"
        tied = head_key not in src
        key = emb_key if tied else head_key
        if tied and table is not None:
            return install_head(model, table, None)
        if not src.kind(key).is_float:
            set_module(model, head[0], QuantLinear(_linear(src, key, report, head[0]), None))
    if table is not None:
        set_module(model, emb_name, QuantEmbedding(table, emb.padding_idx, embedding_scale(emb)))
    elif quantized_table:  # mins, or a scaled embedding: the input side reads the dequantized table
        log.warning("token table %s (%s) is stored dequantized: %.1f MB FP32", emb_key, src.kind(emb_key).name,
                    emb.num_embeddings * emb.embedding_dim * 4 / 1e6)
    return False


def _plain_embedding(emb: nn.Module) -> bool:
    """A lookup QuantEmbedding reproduces: nn.Embedding, or a subclass that only scales the rows (Gemma)."""
    return type(emb) is nn.Embedding or (isinstance(emb, nn.Embedding) and hasattr(emb, "embed_scale"))


def _row(name: str, c: GGMLCodes, mixed: MixedWeight) -> LayerReport:
    """Report row: bits per weight as exported, and the relative error against ggml's own dequantized weight
    (compared in row chunks: a token table dequantized whole is hundreds of MB)."""
    err2, norm2 = 0.0, 0.0
    for a in range(0, c.shape[0], CHECK_ROWS):
        b = min(a + CHECK_ROWS, c.shape[0])
        W = c.dequantize() if b - a == c.shape[0] else row_slice(c, a, b).dequantize()
        W_hat = to_mixed(row_slice(c, a, b)).dequantize() if b - a < c.shape[0] else mixed.dequantize()
        err2 += float(((W - W_hat) ** 2).sum())
        norm2 += float((W**2).sum())
    return LayerReport(name, c.shape, mixed.bits_per_weight(), (err2 / max(norm2, 1e-30)) ** 0.5, 0.0,
                       None if mixed.structure is None else mixed.structure.value)
