import onnxruntime as ort
import pytest

from svdq_edge.errors import UserError
from svdq_edge.runtime.runtimes.session import ProviderError, available_providers, make_session, resolve_provider
from tests.runtime.helpers import tiny_linear_model

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def test_cpu_is_always_available():
    assert "cpu" in available_providers()
    sess = make_session(tiny_linear_model(), "cpu", threads=1)
    assert sess.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA EP")
def test_missing_cuda_is_a_one_line_error_not_a_silent_switch():
    with pytest.raises(ProviderError) as e:
        make_session(tiny_linear_model(), "cuda")
    msg = str(e.value)
    assert "cuda" in msg and "onnxruntime-gpu" in msg and "\n" not in msg


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA EP")
def test_explicit_fallback_runs_on_cpu():
    assert resolve_provider("cuda", fallback="cpu") == "cpu"
    assert make_session(tiny_linear_model(), "cuda", fallback="cpu").get_providers() == ["CPUExecutionProvider"]


def test_bad_provider_threads_and_path(tmp_path):
    with pytest.raises(ProviderError, match="unknown provider"):
        resolve_provider("tpu")
    with pytest.raises(UserError, match="threads"):
        make_session(tiny_linear_model(), "cpu", threads=0)
    with pytest.raises(UserError, match="no such ONNX file"):
        make_session(tmp_path / "nothing", "cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu with a CUDA device")
def test_cuda_session_matches_cpu():
    import numpy as np

    model = tiny_linear_model()
    x = np.random.default_rng(0).standard_normal((2, 3, 64)).astype(np.float32)
    cpu = make_session(model, "cpu").run(None, {"x": x})[0]
    cuda_sess = make_session(model, "cuda")
    assert cuda_sess.get_providers()[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(cuda_sess.run(None, {"x": x})[0], cpu, rtol=1e-3, atol=1e-3)
