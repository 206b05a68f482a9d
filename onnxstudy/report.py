"""results/summary.csv (one row per cell) and the Markdown report built from it."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
    "fidelity_method",
    "true_fp16_samples",
    "true_fp16_max_abs_err",
    "true_fp16_cosine_min",
    "true_fp16_against",
    "precision_status",
    "kept_fp32",
    "quant_params_digest",
    "export_verdict",
    "export_diverging_inputs",
    "export_warnings",
    "parity_sizes",
    "seq_len",
    "accuracy_metric",
]
# How a sentence encoder's figures read (accuracy metric `spearman`, see onnxstudy.text).
SPEARMAN_NOTE = (
    "A sentence encoder: `min cosine` and `max abs err` compare each variant's sentence "
    "embeddings (mean pooling, L2 norm) with PyTorch's on the shipped sentences; `accuracy` is "
    "the Spearman correlation of its similarities of the shipped sentence pairs with fp32's "
    "(1 for fp32 itself), and `tokens` the sequence length a row was timed at."
)
# The largest accuracy drop from fp32 a variant may show and still count as within budget.
DEFAULT_ACCURACY_BUDGET = 0.005
VARIANT_ORDER = {"torch": 0, "fp32": 1, "fp16": 2, "int8": 3, "int8dyn": 5}
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
            record.update({k: parity.get(k) for k in PARITY_FIELDS})
            record["parity_verdict"] = parity["verdict"]
            record["parity_failures"] = "; ".join(parity["failures"])
            record["parity_sizes"] = size_verdicts(parity)
        if variant != "torch":
            record.update(export_columns(_read_json(results / model / "export.json") or {}))
        precision = _read_json(results / model / f"{variant}.json") or {}
        record.update(precision_columns(parity or {}, precision))
        failure = failure_reason(parity or {}, precision)
        if record["status"] == "ok" and failure:
            record.update(status="failed", reason=failure)
        accuracy = _read_json(results / model / "accuracy" / f"{variant}.json") or {}
        record["accuracy"] = accuracy.get("accuracy")
        record["accuracy_metric"] = accuracy.get("metric")
        weights = _read_json(results / model / "weights.json") or {}
        record["weights_origin"] = weights.get("origin")
        rows.append(record)
    summary = pd.DataFrame(rows)

    # A sentence encoder's cell also has a sequence length (tokens); other models' is empty.
    if "seq_len" not in summary:
        summary["seq_len"] = None
    cell = ["model", "provider", "batch", "seq_len"]
    ok = summary[summary["status"] == "ok"]
    for baseline, column in (("torch", "speedup_vs_torch"), ("fp32", "speedup_vs_fp32")):
        base = ok[ok["variant"] == baseline][[*cell, "p50_ms"]].rename(columns={"p50_ms": "_base"})
        summary = summary.merge(base, on=cell, how="left")
        summary[column] = summary["_base"] / summary["p50_ms"]
        summary = summary.drop(columns="_base")
    # Where a variant was timed in pairs with PyTorch, its speed-up is the ratio of the paired
    # medians: both sides measured under the same conditions, consistent with wins_vs_torch
    # and the interval. PyTorch's own cell (timed alone) stands in where there are no pairs.
    if "paired_speedup" in summary:
        paired = pd.to_numeric(summary["paired_speedup"], errors="coerce")
        summary["speedup_vs_torch"] = paired.where(paired.notna(), summary["speedup_vs_torch"])
    fp32_accuracy = (
        summary[summary["variant"] == "fp32"].groupby("model")["accuracy"].first().rename("_acc")
    )
    summary = summary.merge(fp32_accuracy, left_on="model", right_index=True, how="left")
    summary["accuracy_delta"] = summary["accuracy"] - summary["_acc"]
    summary = summary.drop(columns="_acc")
    summary["seq_len"] = summary["seq_len"].astype("Float64").astype("Int64")

    for column in CONTRACT_COLUMNS + EXTRA_COLUMNS:
        if column not in summary:
            summary[column] = None
    rest = [c for c in summary.columns if c not in CONTRACT_COLUMNS + EXTRA_COLUMNS]
    summary = summary.sort_values(
        ["model", "provider", "batch", "seq_len", "variant"],
        key=lambda s: s.map(variant_rank) if s.name == "variant" else s,
    )
    return summary[CONTRACT_COLUMNS + EXTRA_COLUMNS + rest].reset_index(drop=True)


def size_verdicts(parity: dict) -> str | None:
    """A detector's parity verdict per image size, `320x320 pass; 241x305 fail; ...` (the
    export size first); None for parity records without sizes."""
    sizes = parity.get("sizes") or []
    return "; ".join(f"{s['height']}x{s['width']} {s['verdict']}" for s in sizes) or None


def export_columns(export: dict) -> dict:
    """The export check of an ONNX variant's model (export.json): its verdict on inputs unlike
    the export example (`consistent` or `diverges`), the inputs that diverged, and how many
    warnings the exporter gave, `N (M trace)`. None where the model was not exported (zoo)."""
    check = export.get("data_dependence") or {}
    warnings = export.get("warnings")
    return {
        "export_verdict": check.get("verdict"),
        "export_diverging_inputs": "; ".join(check.get("diverging_inputs", [])) or None,
        "export_warnings": (
            f"{len(warnings)} ({len(export.get('trace_warnings', []))} trace)"
            if warnings is not None
            else None
        ),
    }


def variant_rank(variant: str) -> str:
    """Sort key of a variant: torch, fp32, fp16, int8, int8_<recipe> by name, int8dyn."""
    rank = VARIANT_ORDER.get(variant, 4 if str(variant).startswith("int8_") else 9)
    return f"{rank}:{variant}"


def precision_columns(parity: dict, precision: dict) -> dict:
    """Summary columns on how a variant was made (its precision record) and how its fidelity
    was measured: `ort-cpu` figures, plus true-fp16 figures from onnx's reference evaluator
    against the reference outputs, or, where the parity has none, against the fp32 ONNX model
    (the fp16 conversion's own check)."""
    true_fp16, against = parity.get("reference_evaluator"), "reference"
    if not true_fp16:
        true_fp16 = precision.get("fidelity", {}).get("reference_evaluator") or {}
        against = "fp32 onnx" if true_fp16 else None
    kept = precision.get("kept_fp32_op_types") or {}
    return {
        "fidelity_method": parity.get("method"),
        "true_fp16_samples": true_fp16.get("samples") if "verdict" in true_fp16 else None,
        "true_fp16_max_abs_err": true_fp16.get("max_abs_err"),
        "true_fp16_cosine_min": true_fp16.get("cosine_min"),
        "true_fp16_against": against if "verdict" in true_fp16 else None,
        "precision_status": precision.get("status"),
        "kept_fp32": " ".join(f"{op}x{n}" for op, n in sorted(kept.items())) or None,
        "quant_params_digest": precision.get("quantization", {}).get("digest"),
    }


def failure_reason(parity: dict, precision: dict) -> str:
    """Why a variant that ran must not count as `ok`: a precision failure (an fp16 model that
    could not be repaired) or a parity verdict `fail`; "" when neither."""
    reasons = [precision["failure"]] if precision.get("failure") else []
    if parity.get("verdict") == "fail":
        reasons.append("parity failed: " + "; ".join(parity.get("failures", [])))
    return "; ".join(reasons)


def accuracy_budgets(config_text: str) -> tuple[float, dict[str, float]]:
    """The accuracy budget of the config's defaults (else DEFAULT_ACCURACY_BUDGET), and of
    each model that sets its own."""
    import yaml

    config = yaml.safe_load(config_text) or {}
    config = config if isinstance(config, dict) else {}
    default = (config.get("defaults") or {}).get("accuracy_budget", DEFAULT_ACCURACY_BUDGET)
    own = {
        name: float(settings["accuracy_budget"])
        for name, settings in (config.get("models") or {}).items()
        if isinstance(settings, dict) and "accuracy_budget" in settings
    }
    return float(default), own


def within_budget(row: pd.Series, budget: float) -> bool:
    """A variant is within budget when it is `ok` and loses at most `budget` accuracy against
    fp32; without accuracy figures (no labels), when its parity passes. No ONNX variant of an
    export that diverges from PyTorch is: its figures hold only for inputs like the example."""
    if row["status"] != "ok":
        return False
    if row["variant"] != "torch" and row.get("export_verdict") == "diverges":
        return False
    if pd.notna(row["accuracy_delta"]):
        return bool(row["accuracy_delta"] >= -budget)
    return row["variant"] in ("torch", "fp32") or row["parity_verdict"] == "pass"


def trade_off_section(rows: pd.DataFrame, budget: float) -> list[str]:
    """Per provider and batch: size ratio, speed-up vs fp32, accuracy delta and fidelity of
    each variant, and the fastest variant within the accuracy budget."""
    parts = []
    fp32_sizes = rows.loc[rows["variant"] == "fp32", "size_bytes"].dropna()
    fp32_size = fp32_sizes.iloc[0] if len(fp32_sizes) else None
    groups = rows.groupby(["provider", "batch", "seq_len"], sort=False, dropna=False)
    for (provider, batch, seq_len), cell in groups:
        table = pd.DataFrame(
            {
                "variant": cell["variant"],
                "status": cell["status"],
                "size vs fp32": [
                    _fmt(s / fp32_size if pd.notna(s) and fp32_size else None, "{:.2f}")
                    for s in cell["size_bytes"]
                ],
                "speed-up vs fp32": [_fmt(v, "{:.2f}x") for v in cell["speedup_vs_fp32"]],
                "Δ accuracy": [_fmt(v, "{:+.4f}") for v in cell["accuracy_delta"]],
                "fidelity": [
                    f"{v} (min cosine {_fmt(c, '{:.4f}')})" if pd.notna(v) else "–"
                    for v, c in zip(cell["parity_verdict"], cell["cosine_min"], strict=True)
                ],
            }
        )
        fits = cell[[within_budget(row, budget) for _, row in cell.iterrows()]]
        fits = fits[fits["p50_ms"].notna()]
        rule = (
            f"accuracy at most {budget * 100:g} point{'' if budget == 0.01 else 's'} below fp32"
            if cell["accuracy_delta"].notna().any()
            else "parity passed; no labelled data for accuracy"
        )
        metric = cell["accuracy_metric"].dropna()
        if cell["accuracy_delta"].notna().any() and len(metric) and metric.iloc[0] != "top1":
            rule = f"parity passed, {metric.iloc[0]} at most {budget:g} below fp32's"
        if "export_verdict" in cell and (cell["export_verdict"] == "diverges").any():
            rule += "; not the ONNX variants, whose export diverges from PyTorch"
        if fits.empty:
            verdict = f"no variant is `ok` with {rule}."
        else:
            best = fits.loc[fits["p50_ms"].astype(float).idxmin()]
            verdict = (
                f"fastest within budget ({rule}): **{best['variant']}**, "
                f"p50 {best['p50_ms']:.3f} ms ({_fmt(best['speedup_vs_fp32'], '{:.2f}x')} fp32)."
            )
        parts += [
            "",
            f"Trade-off on {provider}, batch {batch}"
            + (f", {int(seq_len)} tokens" if pd.notna(seq_len) else "")
            + f": {verdict}",
            "",
            table.to_markdown(index=False, disable_numparse=True),
        ]
    return parts


def precision_notes(rows: pd.DataFrame) -> list[str]:
    """How fp16 fidelity was measured, fp16 repairs, and int8 recipes that gave identical
    scales and zero points (so they make no difference on this model)."""
    notes = []
    for _, row in rows[rows["variant"] == "fp16"].drop_duplicates("variant").iterrows():
        method = "ONNX Runtime's CPU provider (`ort-cpu`), which computes most fp16 operators "
        method += "in fp32 and so hides fp16 overflow"
        if pd.notna(row.get("true_fp16_samples")):
            method += (
                f"; with true fp16 arithmetic (onnx reference evaluator, "
                f"{int(row['true_fp16_samples'])} samples, against the "
                f"{row['true_fp16_against']}): max abs err "
                f"{_fmt(row['true_fp16_max_abs_err'], '{:.2e}')}, min cosine "
                f"{_fmt(row['true_fp16_cosine_min'], '{:.5f}')}"
            )
        notes.append(f"\n- fp16 fidelity figures above come from {method}.")
        if row.get("precision_status") in ("repaired", "failed"):
            notes.append(
                f"\n- fp16 conversion {row['precision_status']}; kept in fp32: "
                f"{_fmt(row.get('kept_fp32'))} (reasons in fp16.json)."
            )
    static = rows[rows["quant_params_digest"].notna()].drop_duplicates("variant")
    for _, same in static.groupby("quant_params_digest"):
        if len(same) > 1:
            names = " and ".join(same["variant"])
            notes.append(
                f"\n- {names} have identical scales and zero points: their recipes make no "
                "difference on this model."
            )
    return notes


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
    table = pd.DataFrame(lines)
    seq_len = rows.get("seq_len")
    if seq_len is not None and seq_len.notna().any():
        table.insert(3, "tokens", [_fmt(v, "{:.0f}") for v in seq_len])
    return table.to_markdown(index=False)


def render_zoo_section(checks: Sequence[dict]) -> list[str]:
    """The "Model Zoo" section: per zoo model, test and variant, the verdict and the errors
    against the zoo's expected outputs. `checks` are rows of `zoo.check_rows`; none, no section.
    """
    if not checks:
        return []
    parts = [
        "",
        "## Model Zoo",
        "",
        "Model Zoo models have no PyTorch form: each variant is checked against the expected "
        "outputs shipped with the model, test by test (floats within atol + rtol·|expected| "
        "or the variant's min cosine, integers exactly), and timed without a PyTorch pairing. "
        "`inputs matched by` says how stored inputs were mapped to graph inputs.",
    ]
    table = pd.DataFrame(checks)
    # Tests in the order they were read (folders, then .npz files), each with every variant.
    first_seen = {test: index for index, test in enumerate(dict.fromkeys(table["test"]))}
    table = table.sort_values("test", key=lambda tests: tests.map(first_seen), kind="stable")
    for column in ("max_abs_err", "max_rel_err"):
        table[column] = [_fmt(v, "{:.2e}") for v in table[column].astype(object)]
    table = table.rename(
        columns={
            "matched_by": "inputs matched by",
            "status": "verdict",
            "max_abs_err": "max abs err",
            "max_rel_err": "max rel err",
        }
    )
    for model, rows in table.groupby("model", sort=True):
        text = rows.drop(columns="model").to_markdown(index=False, disable_numparse=True)
        parts += ["", f"### {model}", "", text]
    return parts


def export_notes(export: dict) -> list[str]:
    """How a model was exported (its export.json) and what the check on inputs unlike the
    export example found, with the exporter's trace warnings (at most five); nothing for a
    record without an exporter (Model Zoo imports)."""
    if "exporter" not in export:
        return []
    warnings, trace = export.get("warnings", []), export.get("trace_warnings", [])
    opset = f"opset {export['opset']}"
    if export.get("opset_requested") not in (None, export["opset"]):
        opset += f" (asked for {export['opset_requested']})"
    notes = [
        f"\n- Export: {export['exporter']} exporter, {opset}, IR {export['ir_version']}, "
        f"{export['nodes']} nodes, {export['seconds']:.1f} s, peak memory "
        f"{export['peak_rss_bytes'] / 1e6:.0f} MB"
        + (f", weights in {export['external_data']}" if export.get("external_data") else "")
        + f"; {len(warnings)} exporter warnings, {len(trace)} of them from the trace "
        "(all in export.json)."
    ]
    notes += [f"\n  - {text}" for text in trace[:5]]
    if len(trace) > 5:
        notes.append(f"\n  - ... and {len(trace) - 5} more trace warnings")
    check = export.get("data_dependence")
    if check and check["verdict"] == "diverges":
        notes.append(
            f"\n- **The export diverges from PyTorch** on inputs unlike the export example: "
            f"{'; '.join(check['diverging_inputs'])}. The graph froze behaviour that depends "
            "on the input (a branch on its values, or a size turned into a number)."
        )
    elif check:
        variations = ", ".join(dict.fromkeys(case["variation"] for case in check["cases"]))
        batches = sorted({case["batch"] for case in check["cases"] if "batch" in case})
        tried = variations + (f"; batch sizes {', '.join(map(str, batches))}" if batches else "")
        notes.append(
            f"\n- Export check: consistent with PyTorch on {len(check['cases'])} inputs unlike "
            f"the export example ({tried}); inputs not tried are not covered."
        )
    return notes


def detection_section(parity: dict) -> list[str]:
    """A detector's parity per image size: boxes, matches, errors and the verdict."""
    rows = [
        {
            "size": f"{s['height']}x{s['width']}",
            "role": s["role"],
            "PyTorch boxes": s["reference_boxes"],
            "ONNX boxes": s["candidate_boxes"],
            "matched": s["matched"],
            "unmatched (at cut-off)": (
                f"{s['unmatched_reference'] + s['unmatched_candidate']} "
                f"({s['unmatched_at_cutoff']})"
            ),
            "label mismatches": s["label_mismatches"],
            "max score err": _fmt(s["max_score_abs_err"], "{:.1e}"),
            "min IoU": _fmt(s["min_matched_iou"], "{:.4f}"),
            "verdict": s["verdict"],
        }
        for s in parity["sizes"]
    ]
    return [
        "",
        f"Detection parity per image size ({parity['sizes'][0]['images']} photos each): "
        f"boxes matched by IoU >= {parity['iou_threshold']:g}, labels equal, scores within "
        f"{parity['score_atol']:g}; a box scored at the cut-off may be kept by one runtime "
        "only. Sizes not listed were not checked.",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
    ]


def render_report(
    summary: pd.DataFrame,
    config_text: str,
    zoo_checks: Sequence[dict] = (),
    exports: dict[str, dict] | None = None,
    detections: dict[str, dict] | None = None,
) -> str:
    """The Markdown report: a table per model, notes, the Model Zoo checks (rows of
    `zoo.check_rows`, if any), the environment and how to reproduce.

    Args:
        exports: Per model, its export.json (see export_notes). Defaults to none.
        detections: Per detector, the parity record of its fp32 variant (see
            detection_section). Defaults to none.
    """
    exports, detections = exports or {}, detections or {}
    parts = [
        "# ONNX deployment study",
        "",
        "Each model is exported to ONNX (fp32), converted to fp16 and quantized to int8, "
        "checked against its PyTorch reference and timed against PyTorch eager. "
        "`vs PyTorch` and `vs fp32` are ratios of p50 latency on the same provider and batch "
        "(above 1 means faster); `vs PyTorch` takes the medians of the runs paired call by "
        "call with PyTorch. `≈` marks a speed-up whose 95% bootstrap interval over the "
        "paired runs includes 1, i.e. within noise. `wins vs PyTorch` counts the paired "
        "runs in which the variant was faster.",
    ]
    default_budget, budgets = accuracy_budgets(config_text)
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
        elif not origin.empty and origin.iloc[0] == "seeded-heads-bn-reestimated":
            parts += [
                "Weights are seeded (no trained weights configured): the heads' last layers "
                "are redrawn with a wide spread, so scores differ and boxes can be matched, and "
                "the backbone's BatchNorm statistics are re-estimated on real photos. The boxes "
                "are not meaningful objects; parity, size and latency are real.",
                "",
            ]
        elif not origin.empty:
            parts += [f"Weights: {origin.iloc[0]}.", ""]
        if "spearman" in set(rows.get("accuracy_metric", pd.Series(dtype=object)).dropna()):
            parts += [SPEARMAN_NOTE, ""]
        parts.append(model_table(rows))
        parts += export_notes(exports.get(model, {}))
        if model in detections:
            parts += detection_section(detections[model])
        # One line per variant, provider and reason, however many batch sizes and lengths.
        not_ok = rows[rows["status"] != "ok"].drop_duplicates(["variant", "provider", "reason"])
        for _, row in not_ok.iterrows():
            parts.append(
                f"\n- {row['variant']} on {row['provider']}: {row['status']}: {row['reason']}"
            )
        failed = rows[rows["parity_verdict"] == "fail"].drop_duplicates("variant")
        for _, row in failed.iterrows():
            parts.append(f"\n- {row['variant']} parity failed: {row['parity_failures']}")
        parts += precision_notes(rows)
        parts += trade_off_section(rows, budgets.get(model, default_budget))

    parts += render_zoo_section(zoo_checks)
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
