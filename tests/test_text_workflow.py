"""Whole-workflow test of a sentence encoder: all-MiniLM-L6-v2 from its pip package through
export, fp16, two dynamic int8 recipes, parity, accuracy and benchmarks (configs/minilm.yaml)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from tests.conftest import REPO, run_snakemake

pytestmark = pytest.mark.workflow

MINILM_CONFIG = REPO / "tests" / "configs" / "minilm.yaml"
VARIANTS = ["torch", "fp32", "fp16", "int8dyn", "int8dyn_block"]


@pytest.fixture(scope="module")
def minilm_study(tmp_path_factory):
    """A working directory where the tiny MiniLM study has run to completion."""
    workdir = tmp_path_factory.mktemp("minilm_study")
    shutil.copy(MINILM_CONFIG, workdir / "config.yaml")
    run_snakemake(workdir, config=MINILM_CONFIG)
    return workdir


@pytest.fixture(scope="module")
def summary(minilm_study):
    return pd.read_csv(minilm_study / "results" / "summary.csv")


def test_every_variant_batch_and_length_is_an_ok_row(summary):
    cells = summary[["variant", "batch", "seq_len"]].apply(tuple, axis=1)
    expected = {(variant, 2, length) for variant in VARIANTS for length in (8, 16)}
    assert len(summary) == len(expected) and set(cells) == expected
    assert (summary["status"] == "ok").all(), summary[["variant", "reason"]]
    assert (summary["provider_used"] == "cpu").all()
    assert summary["p50_ms"].gt(0).all()
    onnx_rows = summary[summary["variant"] != "torch"]
    assert onnx_rows["wins_vs_torch"].str.endswith("/3").all()


def test_embeddings_follow_pytorch_and_spearman_is_the_accuracy(summary):
    by_variant = summary.drop_duplicates("variant").set_index("variant")
    assert by_variant.loc["fp32", "cosine_min"] > 0.9999
    assert by_variant.loc["fp16", "cosine_min"] > 0.999
    assert by_variant.loc["int8dyn_block", "cosine_min"] >= 0.98
    assert by_variant.loc["int8dyn", "cosine_min"] > 0.9
    assert (summary["accuracy_metric"] == "spearman").all()
    assert by_variant.loc["fp32", "accuracy"] == pytest.approx(1.0)
    assert by_variant.loc["torch", "accuracy"] > 0.999
    for variant in ("fp16", "int8dyn", "int8dyn_block"):
        assert 0.98 < by_variant.loc[variant, "accuracy"] <= 1.0
        assert by_variant.loc[variant, "accuracy_delta"] <= 0
    assert by_variant.loc["int8dyn", "size_bytes"] < 0.3 * by_variant.loc["fp32", "size_bytes"]


def test_records_say_what_was_measured_and_which_fp16_path_ran(minilm_study):
    model = minilm_study / "results" / "minilm"
    parity = json.loads((model / "parity" / "int8dyn.json").read_text())
    assert parity["samples"] == 8 and parity["reference"] == "pytorch"
    assert parity["top1_agreement"] is None and parity["worst_sentence"]
    accuracy = json.loads((model / "accuracy" / "fp16.json").read_text())
    assert accuracy["metric"] == "spearman" and accuracy["samples"] >= 30
    assert accuracy["relatedness_spearman"] > 0.85
    fp16 = json.loads((model / "fp16.json").read_text())
    assert fp16["status"] in ("converted", "repaired") and fp16["method"]
    block = json.loads((model / "int8dyn_block.json").read_text())
    assert block["quantized_ops"]["MatMulNBits"] == 36
    assert sorted(p.name for p in (model / "test_data_set_0").glob("*.pb")) == [
        "input_0.pb",
        "input_1.pb",
        "input_2.pb",
        "output_0.pb",
    ]


def test_a_bench_csv_holds_one_row_per_sequence_length(minilm_study):
    bench = pd.read_csv(minilm_study / "results" / "minilm" / "bench" / "fp32_cpu_b2.csv")
    assert list(bench["seq_len"]) == [8, 16] and (bench["batch"] == 2).all()
    report = (minilm_study / "results" / "report.md").read_text()
    assert "## minilm" in report and "Trade-off on cpu, batch 2, 16 tokens:" in report
