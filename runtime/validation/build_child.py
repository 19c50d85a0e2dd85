"""Build one decoder contender in this process and print its seconds and peak RSS as one JSON line.

Run by runtime/validation/decoders.py as `python -m svdq_edge.runtime.validation.build_child ...`: a fresh
interpreter per build, so that each peak RSS is the build's own.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from svdq_edge.config import QuantConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", dest="config_json", default=None, help="QuantConfig as JSON (ours)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--fp32", action="store_true", help="export FP32")
    kind.add_argument("--genai", action="store_true", help="onnxruntime-genai's builder, -p int4 -e cpu")
    kind.add_argument("--transcode", action="store_true", help="MODEL is a GGUF file: transcode it exactly")
    parser.add_argument("--accuracy-level", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(build(args.model, args.config_json, args.fp32, args.genai, args.transcode, args.accuracy_level,
                           args.out)))


def build(model: str, config_json: str | None, fp32: bool, genai_build: bool, transcode: bool, accuracy_level: int,
          out: Path) -> dict:
    """Build one contender into `out`; returns its peak RSS, seconds and (ours, FP32) the FP32 weight size."""
    from svdq_edge.util.memory import bound_heap, peak_rss_mib

    bound_heap()  # as the CLI does
    baseline = peak_rss_mib()
    start = time.perf_counter()
    facts = {}
    if genai_build:
        from svdq_edge.runtime.decode.genai import build_genai_int4

        build_genai_int4(Path(model), out, out.parent / ".genai-cache", in_process=True)
    elif transcode:
        from svdq_edge.exporters.export import export_onnx
        from svdq_edge.pipeline.transcode import transcode_gguf

        loaded, report = transcode_gguf(Path(model), progress=False)
        export_onnx(loaded, out, report.config.to_dict(), accuracy_level=accuracy_level, overwrite=True)
    else:
        facts = _build_ours(model, config_json, fp32, accuracy_level, out)
    return {"peak_rss_mb": peak_rss_mib(), "baseline_rss_mb": baseline, "seconds": time.perf_counter() - start,
            **facts}


def _build_ours(model: str, config_json: str | None, fp32: bool, accuracy_level: int, out: Path) -> dict:
    """Quantize (lazily where possible) and export ours, or export FP32; returns the FP32 weight size."""
    import torch

    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.pipeline.stream import quantize_any
    from svdq_edge.sources.lazy import LazyWeights
    from svdq_edge.sources.load import load_model

    if LazyWeights.available(model):
        weights = LazyWeights(model)
        weight_bytes = sum(4 * math.prod(weights.shape(n)) for n in weights.names())  # as FP32
    else:
        weight_bytes = 0
    config = None if fp32 else QuantConfig.from_dict(json.loads(config_json))
    if config is None:
        loaded = load_model(model)
    else:
        loaded, report = quantize_any(model, config, progress=False)
        config = report.config  # as resolved: per-layer widths and int8 scales
    with torch.no_grad():
        export_onnx(loaded, out, None if config is None else config.to_dict(),
                    accuracy_level=0 if config is None else accuracy_level, overwrite=True)
    return {"weight_mb": weight_bytes / 2**20}


if __name__ == "__main__":
    main()
