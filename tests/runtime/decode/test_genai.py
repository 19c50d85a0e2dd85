"""The exported decoder folder under onnxruntime-genai (extra `genai`), with the shared past/present buffer on:
its logits and greedy tokens against the PyTorch QuantLinear reference."""

import json

import numpy as np
import pytest
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.export import export_onnx
from svdq_edge.model.lm import greedy_ids
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.sources.load import LoadedModel, ModelTask
from tests.conftest import require_package, tiny_gpt2, tiny_llama_tied

CFG = QuantConfig(method="range", bits=4, block_size=16, keep=0.05, structure="channel", embedding_bits=None,
                  head_bits=8)


@pytest.fixture(scope="module", params=["llama-tied", "gpt2"])
def exported(request, tmp_path_factory):
    model = tiny_llama_tied() if request.param == "llama-tied" else tiny_gpt2()
    model.config.eos_token_id = model.generation_config.eos_token_id = 2
    with torch.no_grad():  # wider weights than the default init, so greedy tokens vary from step to step
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    quantize_model(model, CFG, progress=False)
    out, _, _ = export_onnx(LoadedModel(model, None, ModelTask.CAUSAL_LM, "tiny"),
                            tmp_path_factory.mktemp("genai") / "onnx", CFG.to_dict())
    return model, out


def _genai_greedy(folder, prompt: list[int], n: int) -> tuple[list[int], list[np.ndarray]]:
    # the genai extra is a dev dependency: absent, this fails under CI=true (skips only outside CI, e.g. .ci/floors)
    require_package("onnxruntime_genai", "pip install 'svdq-edge[genai]'")
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + n, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(prompt)
    tokens, logits = [], []
    while not gen.is_done():
        gen.generate_next_token()  # runs the model on the previous token (lazily), then picks the next one
        logits.append(np.array(gen.get_output("logits"))[0, -1].copy())  # the logits that picked it
        tokens.append(int(gen.get_next_tokens()[0]))
    return tokens, logits


def test_folder_declares_a_shared_buffer(exported):
    _, out = exported
    cfg = json.loads((out / "genai_config.json").read_text())
    assert cfg["search"]["past_present_share_buffer"] is True


def test_genai_greedy_tokens_and_logits_match_pytorch(exported):
    model, out = exported
    eos = model.config.eos_token_id
    for prompt in ([1, 5, 9, 33], [7], list(range(40, 60))):
        ref = greedy_ids(model, prompt, 16)
        if eos in ref:  # genai stops at end-of-sequence; the reference does not
            ref = ref[: ref.index(eos) + 1]
        tokens, logits = _genai_greedy(out, prompt, 16)
        assert tokens == ref
        assert len(set(tokens)) > 1  # a discriminating sequence, not one repeated token
        ids = torch.tensor([prompt + tokens[:-1]])
        with torch.no_grad():
            want = model(input_ids=ids).logits[0, len(prompt) - 1 :].numpy()
        np.testing.assert_allclose(np.stack(logits), want, atol=1e-3, rtol=1e-3)
