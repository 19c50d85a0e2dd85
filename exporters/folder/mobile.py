"""ORT format for ONNX Runtime's mobile and minimal builds: `model.ort` beside `model.onnx`, and the
`required_operators.config` a minimal build is compiled with (`build.sh --minimal_build --include_ops_by_config`).

The conversion is ONNX Runtime's own tool (`onnxruntime.tools.convert_onnx_models_to_ort`), run on the finished
folder with the "Fixed" optimization style: the graph optimizations are applied once at conversion, for the target
CPU family (`arm`: phones and most edge boards; `amd64`: x86-64), so the minimal runtime needs no optimizer.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from enum import Enum
from pathlib import Path

from svdq_edge.errors import UserError

ORT_FILE = "model.ort"
OPS_CONFIG = "required_operators.config"


class OrtTarget(str, Enum):
    ARM = "arm"
    AMD64 = "amd64"


def write_ort_format(folder: Path, target: OrtTarget | str = OrtTarget.ARM, onnx_file: str = "model.onnx") -> Path:
    """Convert `folder/onnx_file` to `folder/model.ort` and write `folder/required_operators.config`.

    The converter reads every .onnx file under the directory it is given, so it works on a private directory
    holding links to this model only. Returns the .ort path; a conversion failure is one UserError line."""
    target = OrtTarget(target)
    folder = Path(folder)
    with tempfile.TemporaryDirectory(dir=folder) as work:
        work = Path(work)
        for f in folder.glob(onnx_file + "*"):  # the graph and its external data, under the names it refers to
            (work / f.name).symlink_to(f.resolve())
        cmd = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(work / onnx_file),
               "--output_dir", str(work / "ort"), "--optimization_style", "Fixed", "--target_platform", target.value]
        p = subprocess.run(cmd, capture_output=True, text=True)
        converted = work / "ort" / Path(onnx_file).with_suffix(".ort").name
        if p.returncode != 0 or not converted.is_file():
            lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
            raise UserError(f"{folder / onnx_file}: ONNX Runtime's ORT-format conversion failed ("
                            f"{lines[-1].strip()[:300] if lines else f'exit code {p.returncode}'})")
        converted.replace(folder / ORT_FILE)
        config = next((work / "ort").glob("*" + OPS_CONFIG))  # named after the model when given one file
        lines = config.read_text().splitlines()  # its header names the temporary path: name the shipped file
        (folder / OPS_CONFIG).write_text("\n".join(f"# - {ORT_FILE}" if ln.startswith("# - ") else ln
                                                   for ln in lines) + "\n")
    return folder / ORT_FILE
