"""In-place KV decoding (runtime/decode/shared_kv.py): the same logits as the plain loop, step after step, on a
fused graph; a traced graph is not offered it; a cache overflow is a one-line error."""

import numpy as np
import pytest

from svdq_edge.errors import UserError
from svdq_edge.exporters.export import export_onnx
from svdq_edge.runtime.decode.session import OnnxDecoder
from svdq_edge.runtime.decode.shared_kv import SharedKVDecoder, shares_buffer
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import tiny_llama


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    out, _, _ = export_onnx(LoadedModel(tiny_llama(), None, ModelTask.CAUSAL_LM, "tiny"),
                            tmp_path_factory.mktemp("fused") / "m")
    return out


def test_in_place_steps_give_the_plain_loops_logits(fused):
    assert shares_buffer(fused)
    session = make_session(fused, "cpu", 1)
    prompt = np.random.default_rng(0).integers(0, 100, (1, 9), dtype=np.int64)
    plain = OnnxDecoder(session)
    ref, state = plain.prefill(prompt)
    shared = SharedKVDecoder(session, max_length=20)
    got, length = shared.prefill(prompt)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    for token in (5, 17, 3, 99, 42):
        want, state = plain.step(np.array([token]), state)
        got, length = shared.step(np.array([token]), length)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert length == 14


def test_a_full_cache_is_refused_in_one_line(fused):
    shared = SharedKVDecoder(make_session(fused, "cpu", 1), max_length=4)
    _, length = shared.prefill(np.array([[1, 2, 3, 4]]))
    with pytest.raises(UserError, match="exceed the cache's max_length 4"):
        shared.step(np.array([5]), length)


def test_a_traced_graph_does_not_claim_a_shared_buffer(tmp_path):
    out, _, _ = export_onnx(LoadedModel(tiny_llama(), None, ModelTask.CAUSAL_LM, "tiny"), tmp_path / "t",
                            graph="traced")
    assert not shares_buffer(out)
