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
    return out


def cli(*args: str) -> None:
    cmd = [sys.executable, "-c", "from svdq_edge.cli.app import main; main()", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")


def digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every ONNX, safetensors and JSON file under folder."""
    keep = (".onnx", ".onnx.data", ".safetensors", ".json")
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name.endswith(keep)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="JSON file of the digests")
    parser.add_argument("--compare", type=Path, help="an earlier JSON file: exit 1 unless every digest is equal")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    args = parser.parse_args()
    chosen = cases()
    if args.cases:
        chosen = {name: chosen[name] for name in args.cases.split(",")}
    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, quantize_args in chosen.items():
            start = time.perf_counter()
            q, onnx = Path(tmp) / name / "q", Path(tmp) / name / "onnx"
            cli("quantize", *quantize_args, "-o", str(q))
            cli("export", str(q), "-o", str(onnx))
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
