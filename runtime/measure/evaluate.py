"""Run exported ONNX models over a dataset."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from tqdm.auto import tqdm

from svdq_edge.evaluation.data import TextDataset
from svdq_edge.evaluation.evaluate import batches
from svdq_edge.runtime.decode.session import decoder_feed, is_decoder
from svdq_edge.runtime.measure.metrics import mean_pool


def feed(session: ort.InferenceSession, batch: dict) -> dict[str, np.ndarray]:
    """The batch's tensors that the session takes, as int64 numpy arrays."""
    names = {i.name for i in session.get_inputs()}
    out = {k: v.numpy().astype(np.int64) for k, v in batch.items() if k in names}
    if is_decoder(session):  # a whole sequence at once: empty cache, positions from the mask
        out = decoder_feed(session, out["input_ids"], out["attention_mask"])
    return out


def onnx_outputs(session: ort.InferenceSession, tokenizer, data: TextDataset, pool: bool = False,
                 batch_size: int = 32, max_length: int = 128, progress: bool = True, desc: str = "onnx") -> np.ndarray:
    """The session's first output for every example, concatenated: logits [n, C], or with `pool` the hidden states
    mean-pooled over unmasked tokens: sentence embeddings [n, H]."""
    outs = []
    n_batches = -(-len(data) // batch_size)
    for batch in tqdm(batches(tokenizer, data, batch_size, max_length), total=n_batches, desc=desc,
                      disable=not progress, leave=False):
        y = session.run(None, feed(session, batch))[0]
        outs.append(mean_pool(y, batch["attention_mask"].numpy()) if pool else y)
    return np.concatenate(outs)
