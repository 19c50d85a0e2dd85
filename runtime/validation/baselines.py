"""The backends a user would otherwise pick, built from our FP32 ONNX export with ONNX Runtime's own tools."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import onnx

from svdq_edge.errors import UserError

log = logging.getLogger(__name__)

SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
              "chat_template.jinja", "generation_config.json")


def copy_side_files(src: Path, dst: Path) -> None:
    for name in SIDE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def ort_int8_dynamic(fp32_dir: Path, out_dir: Path) -> None:
    """`quantize_dynamic(weight_type=QInt8)`: INT8 weights, activations quantized at run time. Tensors after
    com.microsoft ops (a fused graph) have no inferred type: they are FP32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_dir / "model.onnx"), str(out_dir / "model.onnx"), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def _nbits(fp32_dir: Path, out_dir: Path, algo_config) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(str(fp32_dir / "model.onnx")), algo_config=algo_config)
    q.process()
    q.model.save_model_to_file(str(out_dir / "model.onnx"))


def ort_rtn_int4(fp32_dir: Path, out_dir: Path, block_size: int = 128, accuracy_level: int = 0) -> None:
    """ORT's MatMulNBitsQuantizer, round-to-nearest, asymmetric, INT4."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig

    _nbits(fp32_dir, out_dir, DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=False,
                                                           accuracy_level=accuracy_level))


def ort_hqq_int4(fp32_dir: Path, out_dir: Path, block_size: int = 128) -> None:
    """ORT's MatMulNBitsQuantizer with HQQ (half-quadratic zero-point/scale optimisation), INT4."""
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig

    _nbits(fp32_dir, out_dir, HQQWeightOnlyQuantConfig(block_size=block_size, bits=4))


BASELINES: dict[str, Callable[[Path, Path], None]] = {
    "ort-int8": ort_int8_dynamic,
    "ort-rtn4": ort_rtn_int4,
    "ort-rtn4-acc4": lambda src, dst: ort_rtn_int4(src, dst, accuracy_level=4),
    "ort-hqq4": ort_hqq_int4,
}


def require_baselines(names) -> None:
    """A one-line UserError naming the first unknown baseline (before anything is built)."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise UserError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)}")


def build_baseline(name: str, fp32_dir: Path, out_dir: Path) -> Path:
    """Write baseline `name` from the FP32 ONNX folder into `out_dir` (created); returns out_dir."""
    require_baselines([name])
    out_dir.mkdir(parents=True, exist_ok=True)
    log.info("building %s", name)
    BASELINES[name](fp32_dir, out_dir)
    copy_side_files(fp32_dir, out_dir)
    return out_dir
