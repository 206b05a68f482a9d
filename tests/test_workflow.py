"""Whole-workflow tests: Snakemake runs the tiny study in a temporary directory."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import TINY_CONFIG, run_snakemake

pytestmark = pytest.mark.workflow


def test_summary_has_an_ok_row_per_cell(tiny_study):
    summary = pd.read_csv(tiny_study / "results" / "summary.csv")
    assert sorted(summary["variant"]) == sorted(["torch", "fp32", "fp16", "int8"])
    assert (summary["status"] == "ok").all()
    assert (summary["provider_used"] == "cpu").all()
    assert summary["p50_ms"].gt(0).all()


def test_fidelity_and_accuracy_are_real(tiny_study):
    summary = pd.read_csv(tiny_study / "results" / "summary.csv").set_index("variant")
    assert summary.loc["fp32", "max_abs_err"] <= 1e-4
    assert summary.loc["fp32", "accuracy"] >= 0.9
    assert abs(summary.loc["int8", "accuracy_delta"]) <= 0.02
    assert summary.loc["int8", "size_bytes"] <= 0.35 * summary.loc["fp32", "size_bytes"]
    wins, runs = summary.loc["fp32", "wins_vs_torch"].split("/")
    assert int(runs) == 5 and 0 <= int(wins) <= 5


def test_outputs_follow_the_contract(tiny_study):
    model = tiny_study / "results" / "digits_cnn"
    for variant in ("fp32", "fp16", "int8"):
        assert (model / f"{variant}.onnx").stat().st_size > 0
        parity = json.loads((model / "parity" / f"{variant}.json").read_text())
        assert parity["verdict"] == "pass"
        assert (model / "bench" / f"{variant}_cpu_b1.csv").exists()
    assert sorted(p.name for p in (model / "test_data_set_0").glob("*.pb")) == [
        "input_0.pb",
        "output_0.pb",
    ]
    report = (tiny_study / "results" / "report.md").read_text()
    assert "## digits_cnn" in report and "## Environment" in report
    assert (tiny_study / "logs" / "export" / "digits_cnn.log").exists()


def test_second_run_has_nothing_to_do(tiny_study):
    process = run_snakemake(tiny_study, "--dry-run")
    assert "Nothing to be done" in process.stdout + process.stderr


def test_invalid_config_names_the_key(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["models"]["digits_cnn"]["opset"] = 40
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    process = run_snakemake(tmp_path, "--dry-run", config=bad, check=False)
    said = process.stdout + process.stderr
    assert process.returncode != 0
    assert "not valid at models > digits_cnn > opset: 40 is greater than the maximum" in said
    assert "Cure: fix or remove that key or value" in said
    assert "Failed validating" not in said  # no dump of the schema

    config["models"]["digits_cnn"].update(opset=17, input_shape=[3, 8, 8])
    bad.write_text(yaml.safe_dump(config))
    process = run_snakemake(tmp_path, "--dry-run", config=bad, check=False)
    said = process.stdout + process.stderr
    assert process.returncode != 0 and "Traceback" not in said
    assert "model 'digits_cnn': digits samples are [1, 8, 8] images, not [3, 8, 8]" in said
