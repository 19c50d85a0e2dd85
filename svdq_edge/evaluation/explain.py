"""How a quantized model was made, in words and per layer: saliency, structure, where H or the input scales came
from, kept-weight counts and per-layer error. Shown by `inspect` and written into `run`'s report."""

from __future__ import annotations

from pathlib import Path

from svdq_edge.artifact.layout import model_file
from svdq_edge.util.table import markdown_table


def explain(config: dict) -> list[str]:
    """Plain-language lines on how the folder was made: saliency, structure, where H or the input scales came from."""
    if "kind" in config:  # a transcoded GGUF
        return [f"transcoded from {config['file']} ({config['file_type']}): every GGML code, scale and block min kept "
                "exactly (no saliency, no H)"]
    from svdq_edge.config import synthetic_kind
    from svdq_edge.saliency import get

    method = get(config["method"])
    keep = "" if not method.keeps else f", {100 * config['keep']:g}% of each layer's weights in FP32"
    lines = [f"method: {method.name}: {method.summary}",
             f"structure: {config['structure']}{keep}" + (f" (only in layers matching {', '.join(config['correct'])})"
                                                          if config.get("correct") else "")]
    calib = config.get("calib_data")
    if method.needs_calibration:
        kind = synthetic_kind(calib)
        source = (f"synthetic:{kind} inputs made by the tool (no user data)" if kind is not None
                  else f"the calibration file {calib}")
        lines.append(f"H = X^T X from {source}: {config['calib_samples']} samples of up to "
                     f"{config['calib_seq_len']} tokens")
    elif method.uses_input_scale:
        lines.append("input scales: data-free estimate (mean |x| on random token sequences); no H")
    else:
        lines.append("data-free: no calibration inputs, no H")
    if config.get("bits_budget") is not None:
        lines.append(f"widths: 4 or 8 bits per layer within {config['bits_budget']:g} bits/weight, by end-to-end "
                     "sensitivity on random tokens")
    if config.get("kernel") == "int8":
        scales = config.get("layer_int8_scale") or {}
        tensor = sum(1 for v in scales.values() if v == "tensor")
        how = {"column": "one per output channel", "tensor": "one per tensor (q/k/v share one)",
               "auto": f"one per tensor on {tensor} of {len(scales)} int8 layers, per output channel on the others "
                       "(by end-to-end sensitivity on random tokens)"}[config.get("int8_scale", "column")]
        lines.append(f"int8 weight scales: {how}")
    return lines


def layer_table(meta: dict) -> str:
    """One row per quantized layer (shape, bits, correction, kept weights, bits/weight, relative weight error), then
    the totals; `meta` is a quantized folder's quant_config.json."""
    rep, config = meta["report"], meta["config"]
    widths = config.get("layer_bits") or {}  # per-layer widths of a mixed-precision model
    scales = config.get("layer_int8_scale") or {}  # per-layer int8 scales chosen by int8_scale auto
    rows = [[r["name"], f"{r['shape'][0]}x{r['shape'][1]}",
             str(widths.get(r["name"], config.get("bits", "-"))) + (f" ({scales[r['name']]})" if r["name"] in scales
                                                                     else ""),
             r["structure"] or "-", str(round(r["kept"] * r["shape"][0] * r["shape"][1])),
             f"{100 * r['kept']:.2f}", f"{r['bits_per_weight']:.2f}", f"{r['rel_error']:.4f}"]
            for r in rep["layers"]]
    lines = [markdown_table(["layer", "out x in", "bits", "correction", "kept", "kept %", "bits/w", "rel err"], rows)]
    if widths:
        counts = {b: sum(1 for v in widths.values() if v == b) for b in sorted(set(widths.values()))}
        lines.append("mixed precision (budget " + str(config.get("bits_budget")) + "): "
                     + ", ".join(f"{n} layers at {b} bits" for b, n in counts.items()))
    lines.append(f"{len(rows)} layers, {rep['mean_bits']:.2f} bits/weight, quantized in {rep['seconds']:.1f}s")
    return "\n".join(lines)


def onnx_folder_summary(folder: Path) -> list[str]:
    """What an ONNX folder holds, from its export.json and the graph (no weights loaded): the graph path, target and
    accuracy level, the op counts, the per-layer table of the quantized ops and the sizes by role."""
    import json
    from collections import Counter

    import onnx

    report = json.loads((folder / "export.json").read_text()) if (folder / "export.json").is_file() else {}
    path = model_file(folder)
    graph = onnx.load(str(path), load_external_data=False)
    ops = Counter(n.op_type for n in graph.graph.node)
    lines = [f"{path}: ONNX IR {graph.ir_version}, opsets "
             + ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in graph.opset_import)
             + (f"; {report.get('graph', '?')} graph, target {report.get('target', 'cpu')}, accuracy level "
                f"{report.get('accuracy_level', '?')}" if report else "; no export.json (not written by svdq-edge)"),
             "ops: " + ", ".join(f"{op} x{n}" for op, n in ops.most_common())]
    layers = report.get("layers") or {}
    if layers:
        rows = [[name, "x".join(map(str, d.get("shape", []))), str(d.get("bits", "-")), str(d.get("block_size", "-")),
                 d.get("structure") or "-", f"{d['bits_per_weight']:.2f}" if "bits_per_weight" in d else "-",
                 d.get("op", "-")] for name, d in layers.items()]
        lines.append(markdown_table(["layer", "out x in", "bits", "block", "correction", "bits/w", "op"], rows))
    if report.get("sizes"):
        from svdq_edge.exporters.export import SizeReport

        lines.append(SizeReport(**report["sizes"]).summary() + ". bits/w: storage bits per weight of a layer's "
                     "codes, scales, zero points and correction")
    return lines
