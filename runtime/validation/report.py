"""Tables, report.json / report.md and PNG plots for validated backends."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import onnxruntime as ort

from svdq_edge.runtime.validation.validate import BackendResult, Validation
from svdq_edge.util.table import markdown_table


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def backend_table(results: list[BackendResult]) -> str:
    """One row per backend (and runtime, when there are several): accuracy or cosine, fidelity, size, latency per
    shape, speed-up vs the first row."""
    ref = results[0]
    is_cls = ref.task != "feature-extraction"
    several = len({r.runtime for r in results}) > 1
    headers = ["runtime"] * several + ["backend", "size MB", "bits/w"]
    if ref.acc is not None:
        headers += ["acc % (95% CI)", "Δ vs fp32 [95% CI], McNemar p"]
    headers += ["agree %", "KL"] if is_cls else ["cos mean", "cos min"]
    for lat in ref.latency:
        headers += [f"b{lat.batch}x{lat.seq} p50/p90 ms", f"speed-up b{lat.batch}"]
    headers += ["RSS MB"]
    rows = []
    for r in results:
        row = [r.runtime] * several + [r.backend.name, f"{r.size_mb:.1f}", f"{r.bits:.2f}"]
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


def device_table(per_device: dict[str, Validation]) -> str:
    """Latency of the same backends on every device kind: one column group per device, speed-ups against that
    device's own first row (FP32 on the first runtime)."""
    kinds = list(per_device)
    first = per_device[kinds[0]].results
    headers = ["runtime/backend"]
    for kind in kinds:
        headers += [f"{kind} b{lat.batch}x{lat.seq} p50 ms (speed-up)" for lat in first[0].latency]
    rows = {r.label: [r.label] for r in first}
    for kind in kinds:
        results = per_device[kind].results
        by_label = {r.label: r for r in results}
        for label, row in rows.items():
            r = by_label.get(label)
            row += ["-"] * len(first[0].latency) if r is None else \
                [f"{lat.p50_ms:.2f} ({ref.p50_ms / lat.p50_ms:.2f}x)"
                 for lat, ref in zip(r.latency, results[0].latency, strict=True)]
    return markdown_table(headers, list(rows.values()))


def write_report(out_dir: Path, title: str, validation: Validation, extra_md: str = "",
                 meta: dict | None = None, per_device: dict[str, Validation] | None = None,
                 lead: str = "") -> list[Path]:
    """report.json, report.md and PNG plots in `out_dir`; returns the files written."""
    from svdq_edge.runtime.runtimes import runtimes

    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    used = list(dict.fromkeys(r.runtime for r in validation.results))
    known = runtimes()
    payload = {"title": title, "environment": env, "meta": meta or {},
               "runtimes": {n: known[n].summary for n in used},
               "results": [r.to_dict(out_dir) for r in validation.results], "skipped": validation.skipped,
               "files": measured_files(validation)}
    if per_device:
        payload["devices"] = {kind: [r.to_dict(out_dir) for r in v.results] for kind, v in per_device.items()}
    files = [out_dir / "report.json", out_dir / "report.md"]
    files[0].write_text(json.dumps(payload, indent=2))
    md = [f"# {title}", "", *(f"{line}\n" for line in lead.splitlines()),  # the answer first (run's pick)
          f"onnxruntime {env['onnxruntime']}, {env['cpus']} CPUs, {env['machine']}; runtimes: "
          + "; ".join(f"`{n}` = {known[n].summary}" for n in used), "", backend_table(validation.results), ""]
    notes = [f"{r.label}: {r.runtime_note}" for r in validation.results if r.runtime_note]
    if notes:
        md += ["Loaded through: " + "; ".join(notes), ""]
    if validation.skipped:
        md += ["Skipped: " + "; ".join(f"{k}: {why}" for k, why in validation.skipped.items()), ""]
    if per_device:
        md += [f"## Latency per device kind ({', '.join(per_device)})", "", device_table(per_device), ""]
    if extra_md:
        md += [extra_md, ""]
    files[1].write_text("\n".join(md))
    files += plot(out_dir, validation.results)
    return files


def measured_files(validation: Validation) -> dict[str, dict[str, str]]:
    """{backend: {file: sha256}} of every backend folder that was measured and is on this machine (a Ray run
    without shared --artifacts measures copies on the workers)."""
    from svdq_edge.artifact.digest import folder_sha256

    folders = {r.backend.name: r.backend.path for r in validation.results}
    return {name: folder_sha256(path) for name, path in folders.items() if Path(path).is_dir()}


def plot(out_dir: Path, results: list[BackendResult]) -> list[Path]:
    """accuracy_vs_size.png (fidelity vs size for embedders) and latency.png, one point / bar per runtime and backend.
    Points carry no text (labels of nearby points overprint): a colour per backend and a marker per runtime, each
    named in its own legend; n and the timed runs are in the titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    several = len({r.runtime for r in results}) > 1
    names = [r.label if several else r.backend.name for r in results]
    markers = {n: m for n, m in zip(dict.fromkeys(r.runtime for r in results), "osD^v<>p", strict=False)}
    colours = {n: f"C{i % 10}" for i, n in enumerate(dict.fromkeys(r.backend.name for r in results))}
    classifier = results[0].acc is not None
    n = results[0].outputs.shape[0]
    runs = results[0].latency[0].runs if results[0].latency else 0
    fig, ax = plt.subplots(figsize=(8.0, 4.6))
    for r in results:
        style = {"marker": markers.get(r.runtime, "o"), "color": colours[r.backend.name], "linestyle": "none",
                 "markersize": 7, "alpha": 0.85}
        if r.acc is not None:
            lo, hi = r.acc.ci
            y, err = 100 * r.acc.value, [[100 * (r.acc.value - lo)], [100 * (hi - r.acc.value)]]
            ax.errorbar(r.size_mb, y, yerr=err, capsize=3, **style)
        else:
            ax.plot(r.size_mb, 100 * (r.cosine_mean if r.cosine_mean is not None else 1.0), **style)
    backend_keys = [Line2D([], [], color=c, marker="o", linestyle="none", label=b) for b, c in colours.items()]
    first = ax.legend(handles=backend_keys, title="backend", fontsize=7, title_fontsize=8, loc="upper left",
                      bbox_to_anchor=(1.01, 1.0))
    if several:
        ax.add_artist(first)
        runtime_keys = [Line2D([], [], color="grey", marker=m, linestyle="none", label=rt) for rt, m in markers.items()]
        ax.legend(handles=runtime_keys, title="runtime", fontsize=7, title_fontsize=8, loc="lower left",
                  bbox_to_anchor=(1.01, 0.0))
    ax.set_xlabel("model file size (MB)")
    ax.set_ylabel("accuracy % (95% CI)" if classifier else "mean cosine to FP32's outputs (%)")
    what = "Accuracy" if classifier else "Fidelity to FP32"
    ax.set_title(f"{what} vs file size (n = {n}{'' if several else ', ' + results[0].runtime})", fontsize=10)
    ax.grid(alpha=0.3)
    files = [out_dir / "accuracy_vs_size.png", out_dir / "latency.png"]
    fig.tight_layout()
    fig.savefig(files[0], dpi=120)
    plt.close(fig)

    ref = results[0]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(results)), 4.4))
    shapes = [(lat.batch, lat.seq) for lat in ref.latency]
    width = 0.8 / max(len(shapes), 1)
    for j, (b, s) in enumerate(shapes):
        xs = [i + j * width for i in range(len(results))]
        # p50 latency relative to the reference (FP32 on the first runtime): below 1 is faster.
        ax.bar(xs, [r.latency[j].p50_ms / ref.latency[j].p50_ms for r in results], width,
               label=f"batch {b} x seq {s} ({ref.latency[j].p50_ms:.1f} ms for {names[0]})")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xticks([i + width * (len(shapes) - 1) / 2 for i in range(len(results))])
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"p50 latency / {names[0]} p50")
    ax.set_title(f"Latency relative to {names[0]} (p50 of {runs} timed runs each)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(files[1], dpi=120)
    plt.close(fig)
    return files
