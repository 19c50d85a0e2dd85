"""Run one decoder in this process and print the peak RSS of running it as one JSON line.

Run by runtime/validation/scale.py as `python -m svdq_edge.runtime.validation.run_child ...`: a fresh interpreter
per contender, so that its high-water mark is the contender's own (in one process, memory freed by an earlier
contender is reused by the next and hides its growth). The runtime is imported first and the baseline taken then:
the figure is what loading the model, filling its cache to --context tokens and decoding one more costs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--folder", type=Path, help="an ONNX decoder folder (ONNX Runtime)")
    where.add_argument("--gguf", type=Path, help="a GGUF file (llama.cpp)")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.folder, args.gguf, args.context, args.threads, args.vocab)))


def run(folder: Path | None, gguf: Path | None, context: int, threads: int, vocab: int) -> dict:
    from svdq_edge.util.memory import peak_rss_mib

    ids = np.random.default_rng(1).integers(100, vocab, (1, context + 1), dtype=np.int64)
    if gguf is not None:
        from svdq_edge.runtime.decode.llamacpp import LlamaCppDecoder

        baseline = peak_rss_mib()
        LlamaCppDecoder(gguf, threads, n_ctx=context + 2).step(ids, "decode").run()
    else:
        from svdq_edge.runtime.decode.session import OnnxDecoder
        from svdq_edge.runtime.runtimes.session import make_session
        from svdq_edge.runtime.validation.scale import fill_cache

        baseline = peak_rss_mib()
        session = make_session(folder, "cpu", threads)
        OnnxDecoder(session).step(ids[0, -1:], fill_cache(session, ids[:, :-1]))
    return {"peak_rss_mb": peak_rss_mib(), "baseline_rss_mb": baseline}


if __name__ == "__main__":
    main()
