"""onnxstudy.report: the export check and per-size detection verdicts in summary and report."""

from __future__ import annotations

import pandas as pd

from onnxstudy.report import export_columns, export_notes, size_verdicts, trade_off_section

DIVERGING_EXPORT = {
    "exporter": "torchscript",
    "opset_requested": 17,
    "opset": 17,
    "ir_version": 8,
    "nodes": 3,
    "seconds": 0.12,
    "peak_rss_bytes": 812_000_000,
    "external_data": None,
    "warnings": [
        "TracerWarning: Converting a tensor to a Python boolean might cause the trace to be "
        "incorrect. [model.py:12]",
        "DeprecationWarning: the legacy exporter is deprecated [torch/onnx/__init__.py:300]",
    ],
    "trace_warnings": [
        "TracerWarning: Converting a tensor to a Python boolean might cause the trace to be "
        "incorrect. [model.py:12]"
    ],
    "data_dependence": {
        "verdict": "diverges",
        "diverging_inputs": ["negated, batch 1", "negated, batch 5"],
        "cases": [
            {"variation": "as is", "batch": 1, "verdict": "consistent"},
            {"variation": "negated", "batch": 1, "verdict": "diverges"},
            {"variation": "negated", "batch": 5, "verdict": "diverges"},
        ],
    },
}


def test_a_diverging_export_is_named_with_its_inputs_and_warnings():
    assert export_columns(DIVERGING_EXPORT) == {
        "export_verdict": "diverges",
        "export_diverging_inputs": "negated, batch 1; negated, batch 5",
        "export_warnings": "2 (1 trace)",
    }
    text = "".join(export_notes(DIVERGING_EXPORT))
    assert "torchscript exporter, opset 17, IR 8, 3 nodes" in text
    assert "[model.py:12]" in text
    assert "**The export diverges from PyTorch**" in text
    assert "negated, batch 1; negated, batch 5" in text


def test_a_consistent_export_says_what_was_tried():
    consistent = {
        **DIVERGING_EXPORT,
        "opset": 18,
        "data_dependence": {
            "verdict": "consistent",
            "diverging_inputs": [],
            "cases": [
                {"variation": "as is", "batch": 1},
                {"variation": "shifted +0.5", "batch": 5},
            ],
        },
    }
    text = "".join(export_notes(consistent))
    assert "opset 18 (asked for 17)" in text
    assert "consistent with PyTorch on 2 inputs" in text
    assert "(as is, shifted +0.5; batch sizes 1, 5)" in text


def test_records_without_an_export_or_sizes_give_nothing():
    imported = {"source": "zoo/digits_mlp/model.onnx", "nodes": 5}
    assert export_notes(imported) == []
    assert set(export_columns(imported).values()) == {None}
    assert size_verdicts({"verdict": "pass", "failures": []}) is None
    sizes = [
        {"height": 320, "width": 320, "verdict": "pass"},
        {"height": 200, "width": 200, "verdict": "fail"},
    ]
    assert size_verdicts({"sizes": sizes}) == "320x320 pass; 200x200 fail"


def test_no_variant_of_a_diverging_export_is_named_fastest():
    rows = pd.DataFrame(
        {
            "variant": ["torch", "fp32", "int8"],
            "status": ["ok", "ok", "ok"],
            "provider": "cpu",
            "batch": 1,
            "seq_len": float("nan"),
            "size_bytes": [None, 3457, 3014],
            "p50_ms": [0.080, 0.0755, 0.0439],
            "speedup_vs_fp32": [0.94, 1.0, 1.72],
            "accuracy_delta": [0.0, 0.0, 0.0028],
            "accuracy_metric": "top1",
            "parity_verdict": [None, "pass", "pass"],
            "cosine_min": [None, 1.0, 0.999],
            "export_verdict": "diverges",
        }
    )
    verdict = trade_off_section(rows, 0.005)[1]
    assert "**torch**, p50 0.080 ms" in verdict
    assert "not the ONNX variants, whose export diverges from PyTorch" in verdict
    consistent = trade_off_section(rows.assign(export_verdict="consistent"), 0.005)[1]
    assert "**int8**, p50 0.044 ms" in consistent and "diverges" not in consistent
