"""results/summary.csv (one row per cell) and the Markdown report built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

CONTRACT_COLUMNS = [
    "model",
    "variant",
    "provider",
    "batch",
    "provider_used",
    "status",
    "reason",
    "size_bytes",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "throughput_per_s",
    "speedup_vs_torch",
    "speedup_vs_fp32",
    "wins_vs_torch",
    "accuracy",
    "accuracy_delta",
    "max_abs_err",
    "max_rel_err",
    "cosine_min",
    "top1_agreement",
]
EXTRA_COLUMNS = [
    "parity_verdict",
    "parity_failures",
    "paired_speedup_ci_low",
    "paired_speedup_ci_high",
    "std_ms",
    "min_ms",
    "session_create_ms",
    "threads",
    "weights_origin",
]
ENVIRONMENT_COLUMNS = ["cpu", "cpu_flags", "cores", "threads", "gpu", "python"]
PARITY_FIELDS = ["max_abs_err", "max_rel_err", "cosine_min", "top1_agreement"]


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def variant_size(results: Path, model: str, variant: str) -> int | None:
    """Bytes of the variant on disk, external data files included; PyTorch: the state dict."""
    if variant == "torch":
        path = results / model / "weights.pt"
        return path.stat().st_size if path.exists() else None
    path = results / model / f"{variant}.onnx"
    if not path.exists():
        return None
    extra = sum(p.stat().st_size for p in path.parent.glob(f"{variant}.onnx.data*"))
    return path.stat().st_size + extra


def build_summary(bench_csvs: list[str | Path], results_dir: str | Path) -> pd.DataFrame:
    """Join benchmark rows with sizes, parity and accuracy into the summary table.

    Args:
        bench_csvs: One CSV per cell, as written by the benchmark stage.
        results_dir: The results folder holding `<model>/parity`, `<model>/accuracy`, etc.

    Returns:
        One row per cell with CONTRACT_COLUMNS first, then EXTRA_COLUMNS and the environment.
    """
    results = Path(results_dir)
    table = pd.concat([pd.read_csv(p) for p in bench_csvs]).reset_index(drop=True)
    table = table.astype(object).where(table.notna(), None)

    rows = []
    for record in table.to_dict("records"):
        model, variant = record["model"], record["variant"]
        record["size_bytes"] = variant_size(results, model, variant)
        parity = _read_json(results / model / "parity" / f"{variant}.json")
        if parity:
            record.update({k: parity[k] for k in PARITY_FIELDS})
            record["parity_verdict"] = parity["verdict"]
            record["parity_failures"] = "; ".join(parity["failures"])
        accuracy = _read_json(results / model / "accuracy" / f"{variant}.json") or {}
        record["accuracy"] = accuracy.get("accuracy")
        weights = _read_json(results / model / "weights.json") or {}
        record["weights_origin"] = weights.get("origin")
        rows.append(record)
    summary = pd.DataFrame(rows)

    cell = ["model", "provider", "batch"]
    ok = summary[summary["status"] == "ok"]
    for baseline, column in (("torch", "speedup_vs_torch"), ("fp32", "speedup_vs_fp32")):
        base = ok[ok["variant"] == baseline][[*cell, "p50_ms"]].rename(columns={"p50_ms": "_base"})
        summary = summary.merge(base, on=cell, how="left")
        summary[column] = summary["_base"] / summary["p50_ms"]
        summary = summary.drop(columns="_base")
    fp32_accuracy = (
        summary[summary["variant"] == "fp32"].groupby("model")["accuracy"].first().rename("_acc")
    )
    summary = summary.merge(fp32_accuracy, left_on="model", right_index=True, how="left")
    summary["accuracy_delta"] = summary["accuracy"] - summary["_acc"]
    summary = summary.drop(columns="_acc")

    for column in CONTRACT_COLUMNS + EXTRA_COLUMNS:
        if column not in summary:
            summary[column] = None
    rest = [c for c in summary.columns if c not in CONTRACT_COLUMNS + EXTRA_COLUMNS]
    order = {"torch": 0, "fp32": 1, "fp16": 2, "int8": 3}
    summary = summary.sort_values(
        ["model", "provider", "batch", "variant"],
        key=lambda s: s.map(order).fillna(9) if s.name == "variant" else s,
    )
    return summary[CONTRACT_COLUMNS + EXTRA_COLUMNS + rest].reset_index(drop=True)


def write_csv_atomically(frame: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def _fmt(value, pattern: str = "{}") -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return pattern.format(value)


def _speedup(row: pd.Series) -> str:
    """Speed-up vs PyTorch, marked `≈` when its 95% interval includes 1 (within noise)."""
    text = _fmt(row["speedup_vs_torch"], "{:.2f}x")
    low, high = row.get("paired_speedup_ci_low"), row.get("paired_speedup_ci_high")
    if pd.notna(low) and pd.notna(high) and low <= 1.0 <= high:
        text = "≈" + text
    return text


def model_table(rows: pd.DataFrame) -> str:
    """The per-model Markdown table: one line per variant, provider and batch."""
    lines = []
    for _, row in rows.iterrows():
        lines.append(
            {
                "variant": row["variant"],
                "provider": f"{row['provider']} (used: {_fmt(row['provider_used'])})",
                "batch": row["batch"],
                "status": row["status"],
                "size (MB)": _fmt(
                    None if pd.isna(row["size_bytes"]) else row["size_bytes"] / 1e6, "{:.3f}"
                ),
                "p50 (ms)": _fmt(row["p50_ms"], "{:.3f}"),
                "p90 (ms)": _fmt(row["p90_ms"], "{:.3f}"),
                "vs PyTorch": _speedup(row),
                "vs fp32": _fmt(row["speedup_vs_fp32"], "{:.2f}x"),
                "wins vs PyTorch": _fmt(row["wins_vs_torch"]),
                "accuracy": _fmt(row["accuracy"], "{:.4f}"),
                "Δ accuracy": _fmt(row["accuracy_delta"], "{:+.4f}"),
                "parity": _fmt(row["parity_verdict"]),
                "max abs err": _fmt(row["max_abs_err"], "{:.2e}"),
                "min cosine": _fmt(row["cosine_min"], "{:.5f}"),
                "top-1 agree": _fmt(row["top1_agreement"], "{:.3f}"),
            }
        )
    return pd.DataFrame(lines).to_markdown(index=False)


def render_report(summary: pd.DataFrame, config_text: str) -> str:
    """The Markdown report: a table per model, notes, the environment and how to reproduce."""
    parts = [
        "# ONNX deployment study",
        "",
        "Each model is exported to ONNX (fp32), converted to fp16 and quantized to int8, "
        "checked against its PyTorch reference and timed against PyTorch eager. "
        "`vs PyTorch` and `vs fp32` are ratios of p50 latency on the same provider and batch "
        "(above 1 means faster); `≈` marks a speed-up whose 95% bootstrap interval over "
        "paired runs includes 1, i.e. within noise. `wins vs PyTorch` counts the paired "
        "runs in which the variant was faster.",
    ]
    for model, rows in summary.groupby("model", sort=True):
        parts += ["", f"## {model}", ""]
        origin = rows["weights_origin"].dropna()
        if not origin.empty and origin.iloc[0] == "seeded-bn-reestimated":
            parts += [
                "Weights are seeded (no trained weights configured) with BatchNorm statistics "
                "re-estimated on real photos. Accuracy needs trained weights and labelled "
                "data, so it is not reported; parity, size and latency are real.",
                "",
            ]
        elif not origin.empty:
            parts += [f"Weights: {origin.iloc[0]}.", ""]
        parts.append(model_table(rows))
        for _, row in rows[rows["status"] != "ok"].iterrows():
            parts.append(
                f"\n- {row['variant']} on {row['provider']}: {row['status']}: {row['reason']}"
            )
        for _, row in rows[rows["parity_verdict"] == "fail"].iterrows():
            parts.append(f"\n- {row['variant']} parity failed: {row['parity_failures']}")

    env = summary.iloc[0]
    parts += ["", "## Environment", ""]
    for column in ENVIRONMENT_COLUMNS + [c for c in summary.columns if c.endswith("_version")]:
        if column in summary and pd.notna(env[column]) and env[column] != "":
            parts.append(f"- {column}: {env[column]}")
    parts += [
        "",
        "## How to reproduce",
        "",
        "    make run                # or: snakemake --cores all",
        "",
        "with this configuration:",
        "",
        "```yaml",
        config_text.rstrip(),
        "```",
        "",
    ]
    return "\n".join(parts)
