"""What our ONNX files declare, so that every ONNX Runtime a user ships can load them.

onnx's `helper.make_model` stamps the IR version of the installed onnx package (IR 14 for onnx 1.23), whatever the
graph needs. ONNX Runtime refuses a file whose IR version is newer than its own: onnxruntime-node/web 1.30-1.31
read up to IR 13, the mobile packages and the C#/Java builds that apps pin are older still. Our graphs use nothing
past IR 10 (no float4/float8 types, no functions), so each file is stamped with the lowest IR version its opset
imports allow (IR 10 for the default domain at opset 21). Contrib domains (com.microsoft) carry no IR requirement.
"""

from __future__ import annotations

import onnx
from onnx import helper

MS_DOMAIN = "com.microsoft"


def lowest_ir_version(model: onnx.ModelProto) -> int:
    """The lowest IR version that the model's opset imports allow (unknown domains carry no requirement)."""
    return helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)


def stamp_lowest_ir(model: onnx.ModelProto) -> onnx.ModelProto:
    """Set `model.ir_version` to `lowest_ir_version(model)` (never raising it); returns the model."""
    model.ir_version = min(model.ir_version or onnx.IR_VERSION, lowest_ir_version(model))
    return model


def make_onnx_model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    """A model over `graph` importing the default domain at `opset` and com.microsoft at 1, stamped with the lowest
    IR version those need."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS_DOMAIN, 1)],
                              producer_name="svdq-edge")
    return stamp_lowest_ir(model)
