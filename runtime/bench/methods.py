"""Benchmark: every data-free method x structure, and synthetic calibration, end to end on every model we have.

    python -m svdq_edge.runtime.bench.methods [--bits-list 4,3] [--models MiniLM,SST-2,RTE,SmolLM2]
        [--results bench_methods.json] [--shared ../shared]

Models and losses (each against the same model in FP32, PyTorch):
  MiniLM   the embedded all-MiniLM-L6-v2: 1 - mean cosine of pooled embeddings on the 80 shipped sentences;
  SST-2    the MiniLM SST-2 classifier: KL of logits on the dev set (872 rows);
  RTE      the MiniLM RTE classifier: KL of logits on the dev set (277 rows);
  SmolLM2  SmolLM2-135M re-quantized from its Q4_1 GGUF (the dequantized GGUF is the FP32 reference): perplexity
           increase on the first --ppl-tokens tokens of WikiText-2 test (window 1024, stride 512).
Candidates: `rtn`; each data-free saliency (magnitude, svd, svd-residual, range, proxy) with the element and channel
structures; the lowrank structure (method-independent); `random` element (a control); GPTQ (keeps nothing) and SpQR
(1% element) on synthetic inputs (`synthetic`: vocabulary sequences for encoders, generated text for the decoder;
and `synthetic:random`); the same two on real data as the reference (GLUE train rows; the SST-2 train split for the
embedder; for SmolLM2 windows of the second half of wiki.test.raw, which the perplexity never reads). Block 128,
keep 1%, no embedding or head quantization. The table gives each loss and the geometric mean of loss / rtn's loss
over every column; the default is the candidate without user data that has the lowest geometric mean.

Results are saved to --results after every candidate and read back, so an interrupted run resumes.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from svdq_edge.util.logs import configure
from svdq_edge.util.table import markdown_table

DATA_FREE = ("magnitude", "svd", "svd-residual", "range", "proxy")


@dataclass(frozen=True)
class Candidate:
    """One row of the table: QuantConfig fields and what it needs (data-free, synthetic, real, control)."""

    label: str
    fields: dict
    kind: str

    @property
    def structure(self) -> str:
        """Where its FP32 budget goes: element, channel, lowrank, or none (rtn; GPTQ with keep 0)."""
        if self.fields.get("method") == "rtn" or self.fields.get("keep", 0.01) == 0:
            return "none"
        return self.fields.get("structure", "channel")


def candidates() -> list[Candidate]:
    """`synthetic` alone is generated text for a causal LM and vocabulary sequences for an encoder."""
    out = [Candidate("rtn", dict(method="rtn"), "data-free")]
    out += [Candidate(f"{m} / {s}", dict(method=m, structure=s), "data-free")
            for m in DATA_FREE for s in ("element", "channel")]
    out.append(Candidate("lowrank", dict(method="svd", structure="lowrank"), "data-free"))
    out.append(Candidate("random / element (control)", dict(method="random", structure="element"), "control"))
    for method, extra in (("gptq", dict(keep=0.0)), ("spqr", dict(keep=0.01, structure="element"))):
        out += [Candidate(f"{method} / {calib}", dict(method=method, calib_data=calib, **extra), "synthetic")
                for calib in ("synthetic", "synthetic:random")]
        out.append(Candidate(f"{method} / real", dict(method=method, calib_data="real", **extra), "real"))
    return out


def encoder_loss(model, tokenizer, data):
    """(outputs of a model, loss against the FP32 outputs): pooled embeddings (cosine) or logits (KL) on `data`."""
    import torch

    from svdq_edge.evaluation.evaluate import kl_divergence

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

    def loss(m) -> float:
        y = outputs(m)
        if feature:
            return 1.0 - torch.nn.functional.cosine_similarity(y, ref).mean().item()
        return kl_divergence(ref, y)

    return loss


def decoder_loss(model, ids, max_length: int = 1024, stride: int = 512):
    """loss(m) = perplexity of m on ids [n] minus the FP32 model's."""
    from svdq_edge.model.lm import torch_window_nll
    from svdq_edge.runtime.decode.perplexity import perplexity

    def ppl(m) -> float:
        return perplexity(lambda w, n: torch_window_nll(m, w, n), ids, max_length, stride, progress=False).ppl

    ref = ppl(model)
    return lambda m: ppl(m) - ref


@dataclass(frozen=True)
class Bench:
    """A loaded FP32 model with its loss function and real calibration source."""

    model: object
    tokenizer: object
    loss: object
    real: str


def load_bench(name: str, shared: Path, ppl_tokens: int, scratch: Path) -> Bench:
    from svdq_edge.evaluation.data import read_glue_tsv, read_text_ids
    from svdq_edge.runtime.validation.pipeline import shipped_sentences
    from svdq_edge.sources.load import load_model

    glue = shared / "data" / "glue"
    if name == "SmolLM2":
        loaded = load_model("smollm2")
        wiki = shared / "data" / "wikitext2" / "wiki.test.raw"
        text = wiki.read_text(encoding="utf-8")
        ids = read_text_ids(loaded.tokenizer, wiki, ppl_tokens)
        # real calibration text: the file's second half, far past the tokens the perplexity reads
        calib = scratch / "wiki.test.second-half.raw"
        calib.write_text(text[len(text) // 2 :], encoding="utf-8")
        if len(loaded.tokenizer(text[: len(text) // 2])["input_ids"]) <= ppl_tokens:
            raise click.UsageError(f"--ppl-tokens {ppl_tokens} reaches the calibration half of {wiki}")
        return Bench(loaded.model, loaded.tokenizer, decoder_loss(loaded.model, ids), str(calib))
    paths = {"MiniLM": (None, None, glue / "sst2" / "train.tsv"),
             "SST-2": (shared / "models" / "minilm-l6-sst2", glue / "sst2" / "dev.tsv", glue / "sst2" / "train.tsv"),
             "RTE": (shared / "models" / "minilm-l6-rte", glue / "rte" / "dev.tsv", glue / "rte" / "train.tsv")}
    path, dev, train = paths[name]
    loaded = load_model(None if path is None else str(path))
    data = shipped_sentences() if dev is None else read_glue_tsv(dev, label2id=loaded.model.config.label2id)
    return Bench(loaded.model, loaded.tokenizer, encoder_loss(loaded.model, loaded.tokenizer, data), str(train))


def run_candidate(bench: Bench, cand: Candidate, bits: int, samples: int, seq_len: int) -> float:
    from svdq_edge.config import QuantConfig
    from svdq_edge.pipeline.apply import calibrate_model, quantize_model

    config = QuantConfig(bits=bits, embedding_bits=None, calib_samples=samples, calib_seq_len=seq_len, **cand.fields)
    model = copy.deepcopy(bench.model)
    stats = calibrate_model(model, bench.tokenizer, config, progress=False)
    quantize_model(model, config, stats, progress=False)
    return bench.loss(model)


def geo_mean(xs: list[float]) -> float:
    return math.exp(sum(map(math.log, xs)) / len(xs))


def summary(cands: list[Candidate], losses: dict[str, dict[str, float]],
            columns: list[str]) -> tuple[list, dict[str, str]]:
    """Table rows, and the default of each correction structure: among candidates without user data that are at or
    below rtn on every column (the issue's floor: never worse than rounding on any model), the lowest geometric mean
    of loss / rtn. Per structure, because structures differ in ONNX Runtime latency (element: 1.3-4x a layer's time,
    channel: +5-15%), which this fidelity table does not see."""
    rows, best, best_geo = [], {}, {}
    for cand in cands:
        row = losses.get(cand.label, {})
        if not all(c in row for c in columns):
            continue
        geo = geo_mean([max(row[c], 1e-12) / max(losses["rtn"][c], 1e-12) for c in columns])
        le_rtn = sum(row[c] <= losses["rtn"][c] for c in columns)
        vs_gptq = "—"
        if "gptq / real" in losses and all(c in losses["gptq / real"] for c in columns):
            vs_gptq = f"{max(row[c] / losses['gptq / real'][c] for c in columns):.2f}"
        rows.append([cand.label, cand.kind, *(f"{row[c]:.5f}" for c in columns), f"{geo:.3f}",
                     f"{le_rtn}/{len(columns)}", vs_gptq])
        eligible = cand.kind in ("data-free", "synthetic") and le_rtn == len(columns)
        if eligible and geo < best_geo.get(cand.structure, math.inf):
            best[cand.structure], best_geo[cand.structure] = cand.label, geo
    return rows, best


@click.command()
@click.option("--bits-list", default="4,3", show_default=True)
@click.option("--models", "model_names", default="MiniLM,SST-2,RTE,SmolLM2", show_default=True)
@click.option("--only", default=None, help="comma-separated candidate labels to run (default: all)")
@click.option("--samples", type=click.IntRange(min=1), default=128, show_default=True,
              help="calibration sequences (encoders)")
@click.option("--decoder-samples", type=click.IntRange(min=1), default=64, show_default=True,
              help="calibration sequences of 256 tokens (SmolLM2)")
@click.option("--ppl-tokens", type=click.IntRange(min=1025), default=4096, show_default=True)
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_methods.json"),
              show_default=True, help="JSON of every loss, written after each candidate and resumed from")
@click.option("--shared", type=click.Path(exists=True, file_okay=False, path_type=Path), default=Path("../shared"),
              show_default=True, help="folder with models/ and data/")
def main(bits_list, model_names, only, samples, decoder_samples, ppl_tokens, results, shared):
    configure()
    names = [n.strip() for n in model_names.split(",") if n.strip()]
    unknown = set(names) - {"MiniLM", "SST-2", "RTE", "SmolLM2"}
    if unknown:
        raise click.UsageError(f"unknown model(s) {', '.join(sorted(unknown))}")
    bits = [int(b) for b in bits_list.split(",")]
    wanted = None if only is None else {s.strip() for s in only.split(",")}
    saved: dict[str, float] = json.loads(results.read_text()) if results.is_file() else {}
    losses: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            bench = None
            causal = name == "SmolLM2"
            for b in bits:
                for cand in candidates():
                    if wanted is not None and cand.label not in wanted:
                        continue
                    key = f"{name} W{b} | {cand.label}"
                    if key not in saved:
                        bench = bench or load_bench(name, shared, ppl_tokens, Path(scratch))
                        fields = dict(cand.fields)
                        if fields.get("calib_data") == "real":
                            fields["calib_data"] = bench.real
                        run = Candidate(cand.label, fields, cand.kind)
                        seq_len = 256 if causal else 128
                        saved[key] = run_candidate(bench, run, b, decoder_samples if causal else samples, seq_len)
                        results.write_text(json.dumps(saved, indent=1))
                    click.echo(f"{key}: {saved[key]:.5f}", err=True)
                    losses.setdefault(cand.label, {})[f"{name} W{b}"] = saved[key]
    columns = [f"{n} W{b}" for n in names for b in bits]
    rows, best = summary(candidates(), losses, columns)
    click.echo(markdown_table(["candidate", "needs", *columns, "geo-mean / rtn", "<= rtn", "max / gptq real"], rows))
    click.echo("\ndefault per structure (no user data, at or below rtn on every column, lowest geometric mean): "
               + "; ".join(f"{structure}: {label}" for structure, label in best.items()))


if __name__ == "__main__":
    main()
