import onnx
import pytest

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.onnx.linear import quant_linear_fragment
from svdq_edge.exporters.onnx.names import Role, role_of, split_name
from svdq_edge.quant.decompose import decompose
from tests.conftest import tiny_bert


@pytest.mark.parametrize(("name", "role"), [
    ("m.q.weight_Q4", Role.CODES), ("m.q.weight_Q8", Role.CODES), ("m.q.weight_int8", Role.CODES),
    ("m.q.weight_scales", Role.SCALES), ("m.q.weight_zp", Role.ZERO_POINTS),
    ("m.q.weight_corr_idx", Role.CORRECTION), ("m.q.weight_corr_M", Role.CORRECTION),
    ("m.q.weight_int8_mask", Role.CONSTANT), ("m.q.weight_shape_in", Role.CONSTANT),
    ("m.q.weight", None), ("cos_cache", None), ("m.embed.weight", None)])
def test_role_table(name, role):
    assert role_of(name) is role


def test_layer_names_with_weight_inside_split_at_the_last_separator():
    assert split_name("a.weight_b.c.weight_corr_val") == ("a.weight_b.c", "corr_val")


@pytest.mark.parametrize("structure", ["channel", "lowrank", "element"])
def test_every_initializer_a_fragment_writes_has_a_role_and_corrections_are_found(structure):
    W = tiny_bert().bert.encoder.layer[0].intermediate.dense.weight.detach()  # [N, K]
    mixed = decompose(W, QuantConfig(block_size=16, keep=0.05, structure=structure))
    frag = quant_linear_fragment("enc.dense", mixed, "x", "y")
    names = [t.name for t in frag.initializers]
    assert names and all(split_name(n) is not None and split_name(n)[0] == "enc.dense" for n in names)
    roles = {role_of(n) for n in names}
    assert {Role.CODES, Role.SCALES, Role.CORRECTION} <= roles
    corr_ops = {n.op_type for n in frag.nodes if any(role_of(i) is Role.CORRECTION for i in n.input)}
    assert corr_ops and "MatMulNBits" not in corr_ops  # correction tensors feed only the correction subgraph
    assert isinstance(frag.initializers[0], onnx.TensorProto)
