"""Benchmark: calibrated methods on real data, on synthetic inputs, and the data-free scores, end to end.

    python -m svdq_edge.runtime.bench_calibration [--bits-list 4,3] [--samples 128] [--shared ../shared]

For the embedded MiniLM (1 - mean cosine of pooled embeddings on the shipped sentences; calibrated on SST-2 train
rows) and the MiniLM SST-2 and RTE classifiers (KL of logits to FP32 on their dev sets; calibrated on their train
rows): rtn and range (data-free), then GPTQ (keeps nothing) and SpQR (1% element) calibrated on real rows,
`synthetic:vocab` and `synthetic:random`. PyTorch, block 128, no embedding quantization. Prints one table with the
geometric mean of each row's loss over RTN's.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import click

from svdq_edge.logs import configure
from svdq_edge.table import markdown_table


def loss_fn(model, tokenizer, data):
    """(outputs of a model, loss against the FP32 outputs): pooled embeddings or logits on `data`."""
    import torch

    texts = [data.text_a] + ([data.text_b] if data.text_b is not None else [])
    enc = tokenizer(*texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    feature = data.task == "sentences"

    def outputs(m):
        with torch.no_grad():
            o = m(**enc)
        if feature:
            mask = enc["attention_mask"].unsqueeze(-1).float()
            return (o.last_hidden_state * mask).sum(1) / mask.sum(1)
        return o.logits

    ref = outputs(model)

    def loss(y) -> float:
        if feature:
            return 1.0 - torch.nn.functional.cosine_similarity(y, ref).mean().item()
        lp, lq = ref.log_softmax(-1), y.log_softmax(-1)
        return (lp.exp() * (lp - lq)).sum(-1).mean().item()

    return outputs, loss


@click.command()
@click.option("--bits-list", default="4,3", show_default=True)
@click.option("--samples", type=click.IntRange(min=1), default=128, show_default=True, help="calibration sequences")
@click.option("--shared", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("../shared"),
              show_default=True, help="folder with models/ and data/glue/")
def main(bits_list, samples, shared):
    configure()
    from svdq_edge.apply import calibrate_model, quantize_model
    from svdq_edge.config import QuantConfig
    from svdq_edge.data import read_glue_tsv
    from svdq_edge.runtime.pipeline import shipped_sentences
    from svdq_edge.sources import load_model

    glue = shared / "data" / "glue"
    models = {"MiniLM": (None, None, glue / "sst2" / "train.tsv"),
              "SST-2": (shared / "models" / "minilm-l6-sst2", glue / "sst2" / "dev.tsv", glue / "sst2" / "train.tsv"),
              "RTE": (shared / "models" / "minilm-l6-rte", glue / "rte" / "dev.tsv", glue / "rte" / "train.tsv")}
    bits = [int(b) for b in bits_list.split(",")]
    losses: dict[str, dict[str, float]] = {}
    for name, (path, dev, train) in models.items():
        loaded = load_model(None if path is None else str(path))
        data = shipped_sentences() if dev is None else read_glue_tsv(dev, label2id=loaded.model.config.label2id)
        outputs, loss = loss_fn(loaded.model, loaded.tokenizer, data)
        for b in bits:
            cands = {"rtn": dict(method="rtn"), "range": dict(method="range")}
            for method, extra in (("gptq", dict(keep=0.0)), ("spqr", dict(keep=0.01, structure="element"))):
                for label, calib in (("real", train), ("synthetic:vocab", "synthetic:vocab"),
                                     ("synthetic:random", "synthetic:random")):
                    cands[f"{method} / {label}"] = dict(method=method, calib_data=str(calib), **extra)
            for label, fields in cands.items():
                config = QuantConfig(bits=b, embedding_bits=None, calib_samples=samples, **fields)
                model = copy.deepcopy(loaded.model)
                stats = calibrate_model(model, loaded.tokenizer, config, progress=False)
                quantize_model(model, config, stats, progress=False)
                losses.setdefault(label, {})[f"{name} W{b}"] = loss(outputs(model))
                click.echo(f"{name} W{b} {label}: {losses[label][f'{name} W{b}']:.5f}", err=True)
    columns = list(losses["rtn"])
    rows = []
    for label, row in losses.items():
        ratios = [row[c] / losses["rtn"][c] for c in columns]
        geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
        rows.append([label, *(f"{row[c]:.5f}" for c in columns), f"{geo:.3f}"])
    click.echo(markdown_table(["method / calibration", *columns, "geometric mean / rtn"], rows))


if __name__ == "__main__":
    main()
