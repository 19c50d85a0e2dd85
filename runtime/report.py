"""Tables, report.json / report.md and PNG plots for validated backends."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import onnxruntime as ort

from svdq_edge.runtime.validate import BackendResult
from svdq_edge.table import markdown_table


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def backend_table(results: list[BackendResult]) -> str:
    """One row per backend: accuracy or cosine, fidelity, size, latency per shape, speed-up vs the first row."""
    ref = results[0]
    is_cls = ref.task != "feature-extraction"
    headers = ["backend", "size MB", "bits/w"]
    if ref.acc is not None:
        headers += ["acc % (95% CI)", "Δ vs fp32 [95% CI], McNemar p"]
    headers += ["agree %", "KL"] if is_cls else ["cos mean", "cos min"]
    for lat in ref.latency:
        headers += [f"b{lat.batch}x{lat.seq} p50/p90 ms", f"speed-up b{lat.batch}"]
    headers += ["RSS MB"]
    rows = []
    for r in results:
        row = [r.backend.name, f"{r.size_mb:.1f}", f"{r.bits:.2f}"]
        if ref.acc is not None:
            lo, hi = r.acc.ci
            row.append(f"{_pct(r.acc.value)} ({_pct(lo)}-{_pct(hi)})")
            p = r.vs_fp32
            row.append("-" if p is None else
                       f"{100 * p.diff:+.2f} [{100 * p.ci[0]:+.2f}, {100 * p.ci[1]:+.2f}], p={p.p_value:.2f}")
        if is_cls:
            row += ["-" if r.agree is None else _pct(r.agree), "-" if r.kl is None else f"{r.kl:.4f}"]
        else:
            row += ["-" if r.cosine_mean is None else f"{r.cosine_mean:.5f}",
                    "-" if r.cosine_min is None else f"{r.cosine_min:.5f}"]
        for lat, ref_lat in zip(r.latency, ref.latency, strict=True):
            row += [f"{lat.p50_ms:.2f}/{lat.p90_ms:.2f}", f"{ref_lat.p50_ms / lat.p50_ms:.2f}x"]
        row.append("-" if r.rss_mb is None else f"{r.rss_mb:.0f}")
        rows.append(row)
    return markdown_table(headers, rows)


def environment() -> dict:
    import os

    return {"onnxruntime": ort.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "providers": ort.get_available_providers()}


def write_report(out_dir: Path, title: str, tables: dict[str, list[BackendResult]], extra_md: str = "",
                 meta: dict | None = None) -> list[Path]:
    """report.json, report.md and PNG plots in `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    payload = {"title": title, "environment": env, "meta": meta or {},
               "providers": {p: [r.to_dict(out_dir) for r in rs] for p, rs in tables.items()}}
    files = [out_dir / "report.json", out_dir / "report.md"]
    files[0].write_text(json.dumps(payload, indent=2))
    md = [f"# {title}", "", f"onnxruntime {env['onnxruntime']}, {env['cpus']} CPUs, {env['machine']}", ""]
    for provider, rs in tables.items():
        md += [f"## {provider.upper()} execution provider", "", backend_table(rs), ""]
    if extra_md:
        md += [extra_md, ""]
    files[1].write_text("\n".join(md))
    files += plot(out_dir, tables)
    return files


def plot(out_dir: Path, tables: dict[str, list[BackendResult]]) -> list[Path]:
    """accuracy_vs_size_<provider>.png (or fidelity vs size) and latency_<provider>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for provider, rs in tables.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for r in rs:
            if r.acc is not None:
                lo, hi = r.acc.ci
                y, err = 100 * r.acc.value, [[100 * (r.acc.value - lo)], [100 * (hi - r.acc.value)]]
                ax.errorbar(r.size_mb, y, yerr=err, fmt="o", capsize=3)
            else:
                y = 100 * (r.cosine_mean if r.cosine_mean is not None else 1.0)
                ax.plot(r.size_mb, y, "o")
            ax.annotate(r.backend.name, (r.size_mb, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("model file size (MB)")
        ax.set_ylabel("accuracy % (95% CI)" if rs[0].acc is not None else "mean cosine vs FP32 (%)")
        ax.set_title(f"Accuracy vs size ({provider})")
        ax.grid(alpha=0.3)
        f = out_dir / f"accuracy_vs_size_{provider}.png"
        fig.tight_layout()
        fig.savefig(f, dpi=120)
        plt.close(fig)
        files.append(f)

        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        shapes = [(lat.batch, lat.seq) for lat in rs[0].latency]
        width = 0.8 / max(len(shapes), 1)
        for j, (b, s) in enumerate(shapes):
            xs = [i + j * width for i in range(len(rs))]
            # p50 latency relative to the first backend (FP32): below 1 is faster.
            ax.bar(xs, [r.latency[j].p50_ms / rs[0].latency[j].p50_ms for r in rs], width,
                   label=f"batch {b} x seq {s} ({rs[0].latency[j].p50_ms:.1f} ms for {rs[0].backend.name})")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks([i + width * (len(shapes) - 1) / 2 for i in range(len(rs))])
        ax.set_xticklabels([r.backend.name for r in rs], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"p50 latency / {rs[0].backend.name} p50")
        ax.set_title(f"Latency relative to {rs[0].backend.name} ({provider})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        f = out_dir / f"latency_{provider}.png"
        fig.savefig(f, dpi=120)
        plt.close(fig)
        files.append(f)
    return files
