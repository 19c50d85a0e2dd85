"""Fault script for bad inputs (issue 29): every case runs the real `svdq-edge` command in its own process (as a user
would, as root in the Docker image) on a bad path, file, folder or option, and its output is classified:

- error:       exit code != 0, one "Error:" line, the last thing printed, no traceback (what we want);
- unexpected:  the "unexpected: run with -v" line of an internal error (a bug to fix);
- traceback:   a Python traceback reached the user;
- accepted:    exit 0 on input that should have been refused;
- hang:        no answer within the time limit.
After each case, nothing may be left at its output path. Prints one table; exits 1 on any case that is not "error".

    python -m tests.faults.inputs            # every case (about 3 minutes on 2 cores)
    python -m tests.faults.inputs --only export-
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

CLI = [str(Path(sys.executable).with_name("svdq-edge"))]  # the console script beside this interpreter


def make_fixtures(root: Path) -> dict[str, Path]:
    """Tiny models and damaged files in `root`, built in code (no download)."""
    import torch
    from safetensors.torch import load_file, save_file

    from tests.conftest import tiny_bert, tiny_bert_tokenizer, tiny_llama
    from tests.ggml_files import write_tiny_llama_gguf

    f = {"root": root}
    f["bert"] = root / "bert"
    tiny_bert().save_pretrained(f["bert"])
    tiny_bert_tokenizer(f["bert"]).save_pretrained(f["bert"])
    f["llama"] = root / "llama"
    tiny_llama().save_pretrained(f["llama"])
    f["q"] = root / "q"
    _cli(["quantize", str(f["bert"]), "-o", str(f["q"]), "--block-size", "32"])
    f["onnx"] = root / "onnx"
    _cli(["export", str(f["q"]), "-o", str(f["onnx"])])
    f["nan"] = root / "q-nan"
    shutil.copytree(f["q"], f["nan"])
    state = load_file(str(f["nan"] / "model.safetensors"))
    key = next(k for k in state if k.endswith(".scales"))
    state[key] = torch.full_like(state[key], math.nan)
    save_file(state, str(f["nan"] / "model.safetensors"))
    good = write_tiny_llama_gguf(root / "good.gguf").read_bytes()
    (root / "cut.gguf").write_bytes(good[: len(good) // 2])
    (root / "garbage.gguf").write_bytes(b"GGUF" + os.urandom(64))
    (root / "empty").mkdir()
    (root / "notes.txt").write_text("not a model\n")
    (root / "bad-config").mkdir()
    (root / "bad-config" / "config.json").write_text("{ not json")
    (root / "bad.tsv").write_text("col1\tcol2\nx\ty\n")
    (root / "labels.tsv").write_text("sentence\tlabel\na good film\t7\n")
    (root / "text.txt").write_text("the film was good . " * 20)
    return f


def cases(f: dict[str, Path]) -> dict[str, list[str]]:
    """Case name -> the command's arguments. `OUT` is replaced by a fresh output path per case."""
    r, b, q, o, ll = (str(f[k]) for k in ("root", "bert", "q", "onnx", "llama"))
    return {
        "quantize-missing-path": ["quantize", f"{r}/nope", "-o", "OUT"],
        "quantize-a-text-file": ["quantize", f"{r}/notes.txt", "-o", "OUT"],
        "quantize-empty-folder": ["quantize", f"{r}/empty", "-o", "OUT"],
        "quantize-broken-config": ["quantize", f"{r}/bad-config", "-o", "OUT"],
        "quantize-bits-5": ["quantize", b, "-o", "OUT", "--bits", "5"],
        "quantize-block-7": ["quantize", b, "-o", "OUT", "--block-size", "7"],
        "quantize-keep-2": ["quantize", b, "-o", "OUT", "--keep", "2"],
        "quantize-keep-negative": ["quantize", b, "-o", "OUT", "--keep", "-0.1"],
        "quantize-unknown-method": ["quantize", b, "-o", "OUT", "--method", "nope"],
        "quantize-calibrated-without-data": ["quantize", b, "-o", "OUT", "--method", "gptq", "--block-size", "32"],
        "quantize-missing-calib-file": ["quantize", b, "-o", "OUT", "--method", "awq", "--calib-data",
                                        f"{r}/none.tsv", "--block-size", "32"],
        "quantize-unknown-recipe": ["quantize", b, "-o", "OUT", "--recipe", "nope"],
        "quantize-cut-gguf": ["quantize", f"{r}/cut.gguf", "-o", "OUT"],
        "quantize-garbage-gguf": ["quantize", f"{r}/garbage.gguf", "-o", "OUT"],
        "quantize-cut-gguf-requantize": ["quantize", f"{r}/cut.gguf", "-o", "OUT", "--requantize"],
        "quantize-into-dev-null": ["quantize", b, "-o", "/dev/null", "--overwrite", "--block-size", "32"],
        "quantize-output-is-input": ["quantize", b, "-o", b, "--overwrite", "--block-size", "32"],
        "export-fp32-without-flag": ["export", b, "-o", "OUT"],
        "export-nan-scales": ["export", str(f["nan"]), "-o", "OUT"],
        "export-accuracy-level-9": ["export", q, "-o", "OUT", "--accuracy-level", "9"],
        "export-accuracy-level-text": ["export", q, "-o", "OUT", "--accuracy-level", "fast"],
        "export-exact-and-level": ["export", q, "-o", "OUT", "--exact", "--accuracy-level", "4"],
        "export-unknown-layout": ["export", q, "-o", "OUT", "--layout", "tflite"],
        "export-ort-format-transformers-js": ["export", q, "-o", "OUT", "--layout", "transformers.js",
                                              "--ort-format", "arm"],
        "export-cut-gguf-fp32": ["export", f"{r}/cut.gguf", "--fp32", "-o", "OUT"],
        "inspect-empty-folder": ["inspect", f"{r}/empty"],
        "eval-without-data": ["eval", q],
        "eval-missing-tsv": ["eval", q, "--data", f"{r}/none.tsv"],
        "eval-bad-tsv-header": ["eval", q, "--data", f"{r}/bad.tsv"],
        "eval-labels-outside-the-model": ["eval", o, "--data", f"{r}/labels.tsv"],
        "eval-causal-lm-missing-text": ["eval", ll, "--data", f"{r}/none.txt"],
        "eval-context-1": ["eval", ll, "--data", f"{r}/text.txt", "--context", "1"],
        "run-threads-100000": ["run", b, "--threads", "100000", "-o", "OUT"],
        "run-unknown-objective": ["run", b, "--objective", "cheap", "-o", "OUT"],
        "run-max-size-0": ["run", b, "--max-size", "0", "-o", "OUT"],
        "run-bad-shape": ["run", b, "--shapes", "1xq", "-o", "OUT"],
        "run-unknown-runtime": ["run", b, "--runtimes", "tpu", "-o", "OUT"],
        "run-causal-lm-without-text": ["run", ll, "-o", "OUT"],
        "run-causal-lm-missing-text": ["run", ll, "--data", f"{r}/none.txt", "-o", "OUT"],
        "generate-on-an-encoder": ["generate", o, "hello"],
        "generate-zero-tokens": ["generate", o, "hello", "--max-new-tokens", "0"],
        "compare-unknown-method": ["compare", b, "--methods", "nope", "-o", "OUT"],
        "tune-negative-size": ["tune", b, "--max-size", "-1", "-o", "OUT"],
    }


def _cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def classify(args: list[str], timeout: float) -> str:
    try:
        done = _cli(args, timeout)
    except subprocess.TimeoutExpired:
        return "hang"
    text = done.stdout + done.stderr
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    if "Traceback (most recent call last)" in text:
        return "traceback"
    if "unexpected: run with -v" in text:
        return "unexpected"
    if done.returncode == 0:
        return "accepted"
    errors = [ln for ln in lines if ln.startswith("Error:")]
    return "error" if len(errors) == 1 and lines[-1] == errors[0] else "unclear"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run the cases whose name starts with this")
    parser.add_argument("--timeout", type=float, default=300)
    a = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="svdq-edge-faults-") as tmp:
        fixtures = make_fixtures(Path(tmp))
        results, left = {}, []
        for name, args in cases(fixtures).items():
            if not name.startswith(a.only):
                continue
            out = Path(tmp) / f"out-{name}"
            results[name] = classify([str(out) if x == "OUT" else x for x in args], a.timeout)
            if out.exists() or list(Path(tmp).glob(f".out-{name}*")):
                left.append(name)
            print(f"{name}: {results[name]}", flush=True)
    counts = Counter(results.values())
    print("\n| outcome | cases |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in sorted(counts.items())))
    print(f"| left an output behind | {len(left)} |")
    if not os.path.exists("/dev/null") or not Path("/dev/null").is_char_device():
        print("/dev/null is no longer a character device")
        return 1
    bad = [n for n, v in results.items() if v != "error"] + left
    if bad:
        print("not a one-line error: " + ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
