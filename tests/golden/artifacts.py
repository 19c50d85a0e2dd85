"""Fingerprint what `quantize` and `export` write: sha256 of every file, per case, as JSON.

Run before and after a change that must not change behaviour (a restructure), then compare the two files:

    python -m tests.golden.artifacts --output before.json
    ... change ...
    python -m tests.golden.artifacts --output after.json --compare before.json

The cases cover the embedded MiniLM, the SST-2 and RTE classifiers (default; mixed widths; int8 kernel with auto
scales; GPTQ calibrated on GLUE train rows) and SmolLM2 (exact transcode; the recipe on the requantized weights).
Each case runs the CLI in a child process, as a user would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
RECIPE = Path(__file__).resolve().parents[2] / "models" / "smollm2-135m.json"


def cases() -> dict[str, list[str]]:
    """Case name -> the `quantize` arguments (model first)."""
    glue = {"sst2": "minilm-l6-sst2", "rte": "minilm-l6-rte"}
    out: dict[str, list[str]] = {"minilm-default": []}
    for task, folder in glue.items():
        model = str(SHARED / "models" / folder)
        train = str(SHARED / "data" / "glue" / task / "train.tsv")
        out[f"{task}-default"] = [model]
        out[f"{task}-auto-5.75"] = [model, "--bits", "auto", "--bits-budget", "5.75"]
        out[f"{task}-int8-auto"] = [model, "--kernel", "int8", "--bits", "8", "--int8-scale", "auto"]
        out[f"{task}-gptq"] = [model, "--method", "gptq", "--calib-data", train, "--calib-samples", "32"]
    out["smollm2-transcode"] = ["smollm2"]
    out["smollm2-recipe"] = ["smollm2", "--requantize", "--recipe", str(RECIPE)]
    # tiny models built in code (tests/conftest.py): every fused graph family, exported by its builder
    for family in TINY:
        out[f"tiny-{family}"] = [f"tiny:{family}", "--block-size", "16", "--keep", "0.05", "--embedding-bits", "none"]
    out["tiny-llama-tied-head8"] = ["tiny:llama_tied", "--block-size", "16", "--embedding-bits", "none",
                                    "--head-bits", "8"]
    return out


CLI = "svdq_edge.cli.app"  # the command line's module ("svdq_edge.cli" before the restructure: --cli)
TINY = ("bert", "llama", "qwen2", "mistral", "gemma3", "gpt2")


def save_tiny(family: str, folder: Path) -> None:
    from tests import conftest

    getattr(conftest, f"tiny_{family}")().save_pretrained(folder)


def cli(module: str, *args: str) -> None:
    cmd = [sys.executable, "-c", f"from {module} import main; main()", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")


def digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every ONNX, safetensors and JSON file under folder. JSON files are hashed without
    their "seconds" fields (how long a step took is the one thing two equal runs never share)."""
    keep = (".onnx", ".onnx.data", ".safetensors", ".json")
    return {str(p.relative_to(folder)): hashlib.sha256(_content(p)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name.endswith(keep)}


def _content(path: Path) -> bytes:
    if path.suffix != ".json":
        return path.read_bytes()

    def untimed(x):
        if isinstance(x, dict):
            return {k: untimed(v) for k, v in x.items() if k != "seconds"}
        return [untimed(v) for v in x] if isinstance(x, list) else x

    return json.dumps(untimed(json.loads(path.read_text())), sort_keys=True).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="JSON file of the digests")
    parser.add_argument("--compare", type=Path, help="an earlier JSON file: exit 1 unless every digest is equal")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--cli", default=CLI, help="the module holding the command line's main")
    args = parser.parse_args()
    chosen = cases()
    if args.cases:
        chosen = {name: chosen[name] for name in args.cases.split(",")}
    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, quantize_args in chosen.items():
            start = time.perf_counter()
            q, onnx = Path(tmp) / name / "q", Path(tmp) / name / "onnx"
            if quantize_args and quantize_args[0].startswith("tiny:"):
                save_tiny(quantize_args[0][5:], Path(tmp) / name / "src")
                quantize_args = [str(Path(tmp) / name / "src"), *quantize_args[1:]]
            cli(args.cli, "quantize", *quantize_args, "-o", str(q))
            cli(args.cli, "export", str(q), "-o", str(onnx))
            result[name] = {f"q/{k}": v for k, v in digest(q).items()}
            result[name].update({f"onnx/{k}": v for k, v in digest(onnx).items()})
            print(f"{name}: {len(result[name])} files, {time.perf_counter() - start:.0f} s", flush=True)
    args.output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(args.compare.read_text())
        rows = [(name, sum(before.get(name, {}).get(k) == v for k, v in files.items()), len(files))
                for name, files in result.items()]
        print("| case | files equal | files |\n|---|---|---|")
        for name, equal, total in rows:
            print(f"| {name} | {equal} | {total} |")
        if any(equal != total or len(before.get(name, {})) != total for name, equal, total in rows):
            raise SystemExit("some files differ")


if __name__ == "__main__":
    main()
