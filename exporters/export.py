"""Export an FP32 model or a quantized folder to an ONNX folder.

Output folder: model.onnx (+ model.onnx.data: always for fused decoders, otherwise over 2 GB), config.json, tokenizer
files, export.json (the size report, the layer table and which graph path was taken). Encoders and traced decoders
load in Optimum's ORTModel classes; fused decoders (exporters/fused/) add genai_config.json and
generation_config.json and run in onnxruntime-genai. The quantization config and a per-layer summary are also in
model.onnx's metadata_props, so the file alone says how it was made.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from svdq_edge.artifact.layout import ONNX_FILE, Layout
from svdq_edge.artifact.outputs import staged_output
from svdq_edge.artifact.side_files import carry_side_files
from svdq_edge.errors import UserError
from svdq_edge.exporters.folder.genai import make_tokenizer_portable, write_genai_files
from svdq_edge.exporters.fused import FusedUnsupported, build_fused, fused_unsupported_reason
from svdq_edge.exporters.onnx.compat import stamp_lowest_ir
from svdq_edge.exporters.onnx.external import ExternalData
from svdq_edge.exporters.onnx.linear import AccuracyLevels
from svdq_edge.exporters.onnx.names import Role, split_name, suffix_role
from svdq_edge.exporters.traced.decoder import KVLayout, trace_decoder_with_past
from svdq_edge.exporters.traced.splice import splice_quantized
from svdq_edge.exporters.traced.torch_export import dense_copy, trace_to_onnx
from svdq_edge.model.embedding import QuantEmbedding
from svdq_edge.sources.load import LoadedModel, ModelTask, portable_source, save_config

EXPORT_REPORT = "export.json"
TWO_GB = 2**31
log = logging.getLogger(__name__)
TARGETS = ("cpu", "web")  # web: no GatherBlockQuantized (exporters/folder/web.py)
GRAPHS = ("auto", "fused", "traced")  # decoders: fused when the family is covered (auto), or forced either way


@dataclass
class SizeReport:
    """Bytes of the ONNX file's initializers by role, and the FP32 equivalent of the same graph."""

    linears: int = 0  # packed codes, scales and zero points
    correction: int = 0  # FP32 correction tensors
    embeddings: int = 0  # token / position embedding tables
    other: int = 0  # everything else (norms, biases, heads, unquantized linears)
    quantized_embeddings: int = 0  # the part of `embeddings` that is block-quantized
    quantized_fp32: int = 0  # what the quantized layers' (and tables') weights take as FP32
    fp32_equivalent: int = 0  # the same file with every quantized weight stored as FP32 instead
    file_bytes: int = 0  # model.onnx (+ external data) on disk

    @property
    def total(self) -> int:
        return self.linears + self.correction + self.embeddings + self.other

    @property
    def ratio(self) -> float:
        return self.file_bytes / self.fp32_equivalent if self.fp32_equivalent else 1.0

    def summary(self) -> str:
        mb = 1e6
        return (f"{self.file_bytes / mb:.1f} MB = {self.ratio:.3f}x FP32 ({self.fp32_equivalent / mb:.1f} MB): "
                f"linears {self.linears / mb:.1f} MB, correction {self.correction / mb:.2f} MB, "
                f"embeddings {self.embeddings / mb:.1f} MB, other {self.other / mb:.1f} MB")


def _tensor_bytes(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def size_report(model: onnx.ModelProto, quant_shapes: dict[str, tuple[int, int]],
                embedding_shapes: dict[str, tuple[int, int]] | None = None) -> SizeReport:
    """Initializer bytes by role. `quant_shapes` / `embedding_shapes`: [N, K] of each quantized linear / table."""
    r = SizeReport()
    embedding_shapes = embedding_shapes or {}
    for t in model.graph.initializer:
        b = _tensor_bytes(t)
        layer, suffix = split_name(t.name) or ("", "")
        if layer in embedding_shapes:
            r.embeddings += b
            r.quantized_embeddings += b
        elif layer in quant_shapes:
            role = suffix_role(suffix)
            if role is Role.CORRECTION:  # FP32 corrections, block offsets included
                r.correction += b
            elif role in (Role.CODES, Role.SCALES, Role.ZERO_POINTS):
                r.linears += b
            else:
                r.other += b  # small constants of the fragment
        elif "embed" in t.name or "wte" in t.name or "wpe" in t.name:
            r.embeddings += b
        else:
            r.other += b
    r.quantized_fp32 = sum(4 * n * k for n, k in (quant_shapes | embedding_shapes).values())
    return r


def export_onnx(loaded: LoadedModel, out_dir: str | Path, quant_config: dict | None = None,
                element_form: str = "auto", accuracy_level: int | AccuracyLevels = 0, overwrite: bool = False,
                opset: int = 18, graph: str = "auto", ort_target: str | None = None,
                target: str = "cpu", layout: Layout | str = Layout.ORT) -> tuple[Path, SizeReport, dict]:
    """Write the ONNX folder atomically; returns (folder, size report, layer table).

    `ort_target` ("arm" or "amd64"): also write model.ort and required_operators.config for ONNX Runtime's mobile
    and minimal builds (exporters/folder/mobile.py). `target` "web": quantized token lookups in standard ops, for the
    onnxruntime-web builds without GatherBlockQuantized (exporters/folder/web.py); "cpu" keeps the contrib op.
    `layout` "transformers.js": the file under onnx/, as transformers.js fetches it (folder/transformers_js.py).

    `graph` (causal LMs only): "fused" builds the onnxruntime-genai graph directly (exporters/fused/),
    "traced" traces the model with torch.onnx (any architecture, Optimum's layout), "auto" takes fused where the
    family is covered. The report and model.onnx's metadata say which path was taken.
    """
    if graph not in GRAPHS:
        raise UserError(f"graph must be one of {GRAPHS}, got {graph!r}")
    if target not in TARGETS:
        raise UserError(f"target must be one of {TARGETS}, got {target!r}")
    layout = Layout(layout)
    if layout is Layout.TRANSFORMERS_JS and ort_target is not None:
        raise UserError("the ORT format (model.ort) is for ONNX Runtime's mobile builds: write it with the ort "
                        "layout, not the transformers.js one")
    out = Path(out_dir)
    start = time.perf_counter()
    path = _graph_path(loaded, graph)
    causal = loaded.task is ModelTask.CAUSAL_LM
    with staged_output(out, overwrite) as tmp:
        if path == "fused" and causal:  # initializers stream into model.onnx.data while the graph is built
            with ExternalData(tmp / (ONNX_FILE + ".data")) as external:
                model, inputs, output, layers, sizes = _fused(loaded, element_form, accuracy_level, external)
        elif path == "fused":  # encoders are small: one self-contained model.onnx
            model, inputs, output, layers, sizes = _fused(loaded, element_form, accuracy_level, None)
        else:
            model, inputs, output, layers, sizes = _traced(loaded, element_form, accuracy_level, opset)
        if target == "web":
            from svdq_edge.exporters.folder.web import portable_embeddings

            portable_embeddings(model)
        onnx.helper.set_model_props(model, _metadata(loaded, out, inputs, output, path, quant_config, layers, target))
        stamp_lowest_ir(model)  # older and embedded ONNX Runtimes (node, web, mobile) refuse a newer stamp
        if path == "fused" and causal:
            onnx.save_model(model, str(tmp / ONNX_FILE))  # its tensors are already in model.onnx.data
        else:
            _save(model, tmp / ONNX_FILE, external=sizes.total >= TWO_GB)
        del model  # free the in-memory graph before the checker reads the file back (peak memory)
        if path != "fused":  # the fused graph uses ORT contrib ops in the default domain, unknown to the checker
            onnx.checker.check_model(str(tmp / ONNX_FILE))
        sizes.file_bytes = sum(p.stat().st_size for p in tmp.glob(ONNX_FILE + "*"))
        sizes.fp32_equivalent = (sizes.file_bytes - sizes.linears - sizes.correction - sizes.quantized_embeddings
                                 + sizes.quantized_fp32)
        _write_side_files(tmp, loaded, genai=path == "fused" and causal)
        report = {"sizes": asdict(sizes), "ratio_to_fp32": sizes.ratio, "inputs": inputs, "output": output,
                  "graph": path, "target": target, "accuracy_level": str(AccuracyLevels.of(accuracy_level)),
                  "quant_config": quant_config, "layers": layers,
                  "seconds": time.perf_counter() - start}
        if ort_target is not None:
            from svdq_edge.exporters.folder.mobile import write_ort_format

            write_ort_format(tmp, ort_target)
            report["ort_format"] = {"file": "model.ort", "target": str(ort_target)}
        if layout is Layout.TRANSFORMERS_JS:
            from svdq_edge.exporters.folder.transformers_js import dtype_of, to_transformers_js

            dtype = dtype_of(layers)
            report["transformers_js"] = {"file": str(to_transformers_js(tmp, dtype).relative_to(tmp)),
                                         "dtype": dtype}
        report["layout"] = str(layout)
        (tmp / EXPORT_REPORT).write_text(json.dumps(report, indent=2))
    return out, sizes, layers


def _metadata(loaded: LoadedModel, out: Path, inputs: list[str], output: str, path: str, quant_config: dict | None,
              layers: dict, target: str) -> dict[str, str]:
    """model.onnx's metadata_props: the file alone says what it holds and how it was made."""
    meta = {"svdq_edge.task": loaded.task.value, "svdq_edge.source": portable_source(loaded.source, out),
            "svdq_edge.inputs": json.dumps(inputs), "svdq_edge.output": output, "svdq_edge.graph": path}
    if loaded.task is ModelTask.CAUSAL_LM:
        meta["svdq_edge.kv_cache"] = json.dumps(asdict(KVLayout.of(loaded.model.config)))
    if quant_config is not None:
        meta["svdq_edge.quant_config"] = json.dumps(quant_config, sort_keys=True)
        meta["svdq_edge.layers"] = json.dumps(layers)
    meta["svdq_edge.target"] = target
    return meta


def _write_side_files(folder: Path, loaded: LoadedModel, genai: bool) -> None:
    """config.json, the tokenizer, sentence-transformers' files and (fused decoders) onnxruntime-genai's files."""
    save_config(loaded.model, folder)
    if loaded.tokenizer is not None:
        loaded.tokenizer.save_pretrained(folder)
        make_tokenizer_portable(folder)
    carry_side_files(loaded.folder, folder)  # sentence-transformers' pooling, normalization, max_seq_length
    if genai:
        write_genai_files(folder, loaded.model, loaded.tokenizer, ONNX_FILE, share_buffer=True)


def _graph_path(loaded: LoadedModel, graph: str) -> str:
    """"fused" or "traced" for this model under the requested `graph`: fused wherever the family is covered
    (decoders; BERT encoders, where it runs FP32, INT8 dynamic and ours 10-20% faster: docs/results.md)."""
    reason = None if graph == "traced" else fused_unsupported_reason(loaded.model.config)
    if graph != "traced" and reason is None:
        return "fused"
    if graph == "fused":
        raise FusedUnsupported(f"no fused graph for this model: {reason} (use --graph traced)")
    window = _sliding_window(loaded.model.config)
    if window is not None:  # the dynamo trace bakes in a full-length cache: wrong (or failing) past the window
        raise UserError(f"the traced graph cannot run this model's {window}-token sliding window"
                        + (" (use --graph fused, the default)" if reason is None else f"; no fused graph: {reason}"))
    if reason is not None:
        log.info("traced graph: %s", reason)
    return "traced"


def _sliding_window(config) -> int | None:
    """The attention window when it is shorter than the model's positions (Mistral, Gemma 3, Qwen2 with
    use_sliding_window), else None."""
    window = getattr(config, "sliding_window", None)
    if config.model_type == "qwen2" and not getattr(config, "use_sliding_window", False):
        return None
    max_pos = getattr(config, "max_position_embeddings", None)
    return window if window is not None and (max_pos is None or window < max_pos) else None


def _fused(loaded: LoadedModel, element_form: str, accuracy_level: int, external: ExternalData | None):
    fd = build_fused(loaded.model, accuracy_level, element_form, external)
    sizes = size_report(fd.model, fd.quant_shapes, fd.embedding_shapes)
    inputs = [i.name for i in fd.model.graph.input]
    return fd.model, inputs, fd.model.graph.output[0].name, fd.layers, sizes


def _traced(loaded: LoadedModel, element_form: str, accuracy_level: int, opset: int):
    dense, quant = dense_copy(loaded.model)
    if loaded.task is ModelTask.CAUSAL_LM:  # decoders always carry their KV cache (prefill = empty past)
        model, inputs, outputs = trace_decoder_with_past(dense, opset)
        output = outputs[0]
    else:
        model, inputs, output = trace_to_onnx(dense, loaded.task, opset, loaded.tokenizer)
    del dense
    layers = {}
    if quant:
        ops = splice_quantized(model, quant, element_form, accuracy_level)
        for name, q in quant.items():
            if isinstance(q, QuantEmbedding):
                p = q.packed
                layers[name] = {"kind": "embedding", "shape": [p.N, p.K], "bits": p.bits,
                                "block_size": p.block_size, "bits_per_weight": round(8 * p.nbytes() / (p.N * p.K), 4),
                                "traced_op": ops[name]}
                continue
            m = q.mixed
            layers[name] = {"kind": "linear", "shape": list(m.shape), "bits": m.packed.bits,
                            "block_size": m.packed.block_size, "structure": q.structure,
                            "bits_per_weight": round(m.bits_per_weight(), 4), "traced_op": ops[name]}
    sizes = size_report(model, {n: tuple(v["shape"]) for n, v in layers.items() if v["kind"] == "linear"},
                        {n: tuple(v["shape"]) for n, v in layers.items() if v["kind"] == "embedding"})
    return model, inputs, output, layers, sizes


def _save(model: onnx.ModelProto, path: Path, external: bool) -> None:
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
