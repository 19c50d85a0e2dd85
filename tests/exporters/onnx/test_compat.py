"""Every export is stamped with the lowest IR version its opsets need (IR 10), so that ONNX Runtimes older than
the onnx package that wrote it (onnxruntime-node/web read up to IR 13; onnx 1.23 stamps 14) load it. Under
.ci/floors these exports load in the oldest onnxruntime the project declares."""

import onnx
import pytest
from onnx import TensorProto, helper

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.exporters.onnx.compat import lowest_ir_version, make_onnx_model, stamp_lowest_ir
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import tiny_bert, tiny_gpt2, tiny_llama

IR_MAX = 10  # what the oldest runtime we target (onnxruntime 1.27, node/web 1.30) reads with room to spare

CASES = {
    "bert-classifier-fused": (tiny_bert, ModelTask.SEQUENCE_CLASSIFICATION, "fused"),
    "llama-fused": (tiny_llama, ModelTask.CAUSAL_LM, "fused"),
    "gpt2-traced": (tiny_gpt2, ModelTask.CAUSAL_LM, "traced"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_declares_lowest_ir_and_loads(tmp_path, case):
    make, task, graph = CASES[case]
    model = make()
    quantize_model(model, QuantConfig(block_size=16, keep=0.05), progress=False)
    out, _, _ = export_onnx(LoadedModel(model, None, task, case), tmp_path / "onnx", graph=graph)
    m = onnx.load(str(out / "model.onnx"), load_external_data=False)
    assert m.ir_version == lowest_ir_version(m) <= IR_MAX
    assert any(n.op_type == "MatMulNBits" for n in m.graph.node)
    make_session(out, "cpu", 1)  # loads in the installed onnxruntime (the declared floor under .ci/floors)


def test_stamp_lowers_never_raises():
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = make_onnx_model(graph, 21)
    assert m.ir_version == 10  # opset 21 came with IR 10; com.microsoft adds no requirement
    m.ir_version = 7  # a file already stamped lower than its opsets need stays as its writer left it
    assert stamp_lowest_ir(m).ir_version == 7
    m = make_onnx_model(graph, 17)
    assert m.ir_version == lowest_ir_version(m) == 8
