"""`svdq-edge generate`: stream tokens from an exported KV-cache decoder under ONNX Runtime."""

from __future__ import annotations

import time
from pathlib import Path

import click

from svdq_edge.cli.common import THREADS, user_errors
from svdq_edge.errors import UserError


@click.command()
@click.argument("onnx_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("prompt")
@click.option("--max-new-tokens", type=click.IntRange(1, 8192), default=64, show_default=True)
@click.option("--temperature", type=float, default=0.0, show_default=True, help="0 = greedy decoding")
@click.option("--top-k", type=int, default=0, show_default=True, help="sample among the k likeliest (0 = all)")
@click.option("--top-p", type=float, default=1.0, show_default=True, help="nucleus sampling mass")
@click.option("--seed", type=int, default=0, show_default=True, help="sampling seed")
@click.option("--chat/--raw", default=True, show_default=True,
              help="wrap the prompt in the tokenizer's chat template when it has one")
@click.option("--runtime", type=click.Choice(["auto", "genai", "ort"]), default="auto", show_default=True,
              help="genai: onnxruntime-genai's Generator (extra `genai`; needs genai_config.json in the folder); "
                   "ort: our ONNX Runtime loop; auto: genai when both are there, else ort")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="execution provider of the ort runtime (genai reads its providers from genai_config.json)")
@click.option("--threads", type=THREADS, default=2, show_default=True,
              help="ONNX Runtime intra-op threads")
@user_errors
def generate(onnx_dir, prompt, max_new_tokens, temperature, top_k, top_p, seed, chat, runtime, provider, threads):
    """Generate text from ONNX_DIR (a decoder exported by `svdq-edge export`) after PROMPT, streaming tokens.

    Example: svdq-edge generate out/smollm2-q41-onnx "What is the capital of France?" --max-new-tokens 64"""
    from svdq_edge.runtime.decode.generate import SamplingConfig, stream_text
    from svdq_edge.sources.load import load_tokenizer

    cfg = SamplingConfig(temperature, top_k, top_p, seed)
    tokenizer = load_tokenizer(str(onnx_dir))
    if tokenizer is None:
        raise UserError(f"{onnx_dir}: no tokenizer files next to the ONNX model")
    ids = prompt_ids(tokenizer, prompt, chat)
    runtime = pick_runtime(onnx_dir, runtime)
    tokens = _token_stream(onnx_dir, runtime, ids, max_new_tokens, cfg, tokenizer, provider, threads)
    start = time.perf_counter()
    out = stream_text(tokenizer, tokens, lambda piece: click.echo(piece, nl=False))
    seconds = time.perf_counter() - start
    click.echo("")
    where = "onnxruntime-genai" if runtime == "genai" else f"onnxruntime {provider}"
    click.echo(f"[{len(ids)} prompt tokens, {len(out)} new tokens in {seconds:.2f}s: "
               f"{len(out) / seconds:.1f} tokens/s, {'greedy' if temperature == 0 else 'sampled'}, {where}]",
               err=True)


def pick_runtime(onnx_dir: Path, runtime: str) -> str:
    """'genai' or 'ort' for this folder: `auto` takes genai when it is installed and the folder has its config."""
    from svdq_edge.runtime.decode.genai import genai_available, is_genai_folder

    if runtime == "genai":
        if not genai_available():
            raise UserError("--runtime genai needs onnxruntime-genai: pip install 'svdq-edge[genai]'")
        if not is_genai_folder(onnx_dir):
            raise UserError(f"{onnx_dir}: no genai_config.json (export it with the fused graph)")
        return "genai"
    if runtime == "auto" and genai_available() and is_genai_folder(onnx_dir):
        return "genai"
    return "ort"


def _token_stream(onnx_dir, runtime, ids, max_new_tokens, cfg, tokenizer, provider, threads):
    if runtime == "genai":
        from svdq_edge.runtime.decode.genai import GenaiDecoder

        return GenaiDecoder(onnx_dir).generate_ids(ids, max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p,
                                                   cfg.seed)
    from svdq_edge.runtime.decode.generate import generate_ids
    from svdq_edge.runtime.decode.session import OnnxDecoder
    from svdq_edge.runtime.decode.shared_kv import SharedKVDecoder, shares_buffer
    from svdq_edge.runtime.runtimes.session import make_session

    session = make_session(onnx_dir, provider, threads)
    # On CPU a fused graph appends to its cache in place (the plain loop copies the whole cache on every token)
    decoder = SharedKVDecoder(session, len(ids) + max_new_tokens) if provider == "cpu" and shares_buffer(onnx_dir) \
        else OnnxDecoder(session)
    eos = frozenset(i for i in (tokenizer.eos_token_id,) if i is not None)
    return generate_ids(decoder, ids, max_new_tokens, cfg, eos)


def prompt_ids(tokenizer, prompt: str, chat: bool) -> list[int]:
    """Token ids of the prompt, through the chat template when asked for and available."""
    if chat and getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return tokenizer(prompt, add_special_tokens=True)["input_ids"]
