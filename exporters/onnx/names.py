"""One naming rule for the initializers of a quantized layer, and the table that reads a name back.

Every initializer that layer `<name>` writes is `<name>.weight_<suffix>` (onnx/linear.py, onnx/embedding.py); the
suffix gives its role:

  Q<bits>  packed codes (MatMulNBits, GatherBlockQuantized)    int8    int8 codes [K, N] (DynamicQuantizeMatMul)
  scales   per-block or per-column scales                      zp      packed zero points
  corr_*   the FP32 correction (indices, values, factors, block offsets)
  other    small constants of the fragment (shapes, axes, the int8 input mask)
"""

from __future__ import annotations

import re
from enum import Enum

SEPARATOR = ".weight_"


class Role(str, Enum):
    CODES = "codes"
    SCALES = "scales"
    ZERO_POINTS = "zero_points"
    CORRECTION = "correction"
    CONSTANT = "constant"


EXACT = {"int8": Role.CODES, "scales": Role.SCALES, "zp": Role.ZERO_POINTS}
PATTERNS = ((re.compile(r"Q\d+"), Role.CODES), (re.compile(r"corr_.*"), Role.CORRECTION))


def split_name(init: str) -> tuple[str, str] | None:
    """(layer, suffix) of an initializer written by a quantized layer, or None for any other initializer."""
    layer, sep, suffix = init.rpartition(SEPARATOR)
    return (layer, suffix) if sep and layer else None


def suffix_role(suffix: str) -> Role:
    """The role a suffix (after `.weight_`) names."""
    if suffix in EXACT:
        return EXACT[suffix]
    return next((role for pattern, role in PATTERNS if pattern.fullmatch(suffix)), Role.CONSTANT)


def role_of(init: str) -> Role | None:
    """The role of a quantized layer's initializer (None: not written by a quantized layer)."""
    parts = split_name(init)
    return None if parts is None else suffix_role(parts[1])
