"""Whole-workflow test of the export paths: a torchvision detector checked per image size, and
a `python:` model whose weights live in external data through every later stage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pandas as pd
import pytest
import yaml

from onnxstudy.onnxfile import external_data_files, variant_size_bytes
from tests.conftest import REPO, run_snakemake

pytestmark = pytest.mark.workflow

EXPORT_CONFIG = REPO / "tests" / "configs" / "export.yaml"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A study folder holding the user's model file, where tests/configs/export.yaml has run."""
    workdir = tmp_path_factory.mktemp("export_study")
    (workdir / "examples").mkdir()
    shutil.copy(REPO / "examples" / "my_model.py", workdir / "examples" / "my_model.py")
    run_snakemake(workdir, config=EXPORT_CONFIG)
    return workdir


@pytest.fixture(scope="module")
def summary(study) -> pd.DataFrame:
    return pd.read_csv(study / "results" / "summary.csv")


def test_the_detector_is_exported_with_dynamic_height_and_width(study):
    results = study / "results" / "detector"
    [image] = onnx.load(results / "fp32.onnx", load_external_data=False).graph.input
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [
        3,
        "height",
        "width",
    ]
    record = json.loads((results / "export.json").read_text())
    assert record["exporter"] == "torchscript" and record["opset"] == 17
    assert record["ir_version"] <= 13 and record["nodes"] > 1000
    assert {"NonZero", "RoiAlign", "TopK"} <= set(record["op_types"])
    assert record["trace_warnings"] and record["peak_rss_bytes"] > 0
    check = record["data_dependence"]
    assert check["verdict"] == "consistent"
    assert [c["variation"] for c in check["cases"]] == [
        "photo 2",
        "darker x0.5",
        "inverted 1-x",
        "mirrored",
    ]
    assert sorted(p.name for p in (results / "test_data_set_0").glob("*.pb")) == [
        "input_0.pb",
        "output_0.pb",
        "output_1.pb",
        "output_2.pb",
    ]


def test_the_detector_has_a_parity_verdict_per_size(study, summary):
    parity = json.loads((study / "results" / "detector" / "parity" / "fp32.json").read_text())
    sizes = [(s["height"], s["width"], s["role"], s["verdict"]) for s in parity["sizes"]]
    assert sizes == [(320, 320, "export", "pass"), (241, 305, "other", "pass")]
    for size in parity["sizes"]:
        assert size["reference_boxes"] == 200 and size["min_matched_iou"] >= 0.99
    rows = summary[summary["model"] == "detector"].set_index("variant")
    assert rows.loc["fp32", "parity_sizes"] == "320x320 pass; 241x305 pass"
    assert rows.loc["fp32", "status"] == "ok" and rows.loc["fp32", "export_verdict"] == "consistent"
    assert rows.loc["fp32", "weights_origin"] == "seeded-heads-bn-reestimated"
    report = (study / "results" / "report.md").read_text()
    assert "Detection parity per image size" in report and "| 241x305 | other" in report
    assert "heads' last layers are redrawn" in report


def test_the_detector_is_timed_at_batch_one_with_its_own_run_count(study, summary):
    rows = summary[summary["model"] == "detector"]
    assert sorted(rows["variant"]) == ["fp32", "torch"] and set(rows["batch"]) == {1}
    assert (summary[summary["model"] == "my_model"]["batch"] == 2).all()
    bench = pd.read_csv(study / "results" / "detector" / "bench" / "fp32_cpu_b1.csv")
    assert bench.loc[0, "runs"] == 2 and bench.loc[0, "wins_vs_torch"].endswith("/2")


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_every_variant_of_the_python_model_keeps_its_weights_in_external_data(
    study, summary, variant
):
    results = study / "results" / "my_model"
    onnx_file, data_file = results / f"{variant}.onnx", results / f"{variant}.onnx.data"
    assert external_data_files(onnx_file) == [data_file]
    # The weights are in the data file: fp32's 4 bytes a weight, fp16's 2, int8's 1 or so.
    fp32_weights = (results / "fp32.onnx.data").stat().st_size
    assert fp32_weights > 30_000 and data_file.stat().st_size > 0.2 * fp32_weights
    row = summary.set_index(["model", "variant"]).loc[("my_model", variant)]
    assert row["size_bytes"] == variant_size_bytes(onnx_file)
    assert row["size_bytes"] == onnx_file.stat().st_size + data_file.stat().st_size
    assert row["status"] == "ok" and row["parity_verdict"] == "pass"
    assert row["p50_ms"] > 0 and row["accuracy"] > 0.85


def test_the_python_model_is_trained_exported_and_checked(study, summary):
    record = json.loads((study / "results" / "my_model" / "export.json").read_text())
    assert record["external_data"] == "fp32.onnx.data"
    assert record["data_dependence"]["verdict"] == "consistent"
    assert {case["batch"] for case in record["data_dependence"]["cases"]} == {1, 5}
    weights = json.loads((study / "results" / "my_model" / "weights.json").read_text())
    assert weights["origin"] == "trained" and weights["class"] == "TinyDigitsNet"
    row = summary.set_index(["model", "variant"]).loc[("my_model", "fp32")]
    assert row["export_verdict"] == "consistent" and row["export_warnings"].endswith("(0 trace)")
    assert "weights in fp32.onnx.data" in (study / "results" / "report.md").read_text()


def test_editing_the_model_file_reruns_its_model_only(study):
    source = study / "examples" / "my_model.py"
    original = source.read_text()
    source.write_text(original.replace("width=16", "width=8"))
    try:
        process = run_snakemake(study, "--dry-run", config=EXPORT_CONFIG)
    finally:
        source.write_text(original)
    planned = process.stdout + process.stderr
    assert "results/my_model/weights.pt" in planned
    assert "results/detector/weights.pt" not in planned


def test_a_misspelt_model_file_fails_its_own_job_with_the_cure(study, tmp_path):
    config = yaml.safe_load(EXPORT_CONFIG.read_text())
    config["models"]["typo"] = {"source": "python:examples/my_modle.py:build_model"}
    config["models"]["typo"].update(dataset="digits")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config))
    targets = ("results/typo/weights.pt", "results/my_model/weights.pt")
    process = run_snakemake(study, *targets, config=path, check=False)
    said = process.stdout + process.stderr
    assert process.returncode != 0 and "MissingInputException" not in said
    assert "model 'typo': model file examples/my_modle.py does not exist" in said
    assert "relative to the folder the study runs in" in said
    assert not (study / "results" / "typo" / "weights.pt").exists()
    assert (study / "results" / "my_model" / "weights.pt").exists()
    # The summary and report no longer describe this study: they are set aside, not left
    # looking current; the next successful run of the study drops the stale copies.
    results = study / "results"
    assert not (results / "summary.csv").exists() and not (results / "report.md").exists()
    assert (results / "summary.stale.csv").exists() and (results / "report.stale.md").exists()
    assert "results/summary.csv is from an earlier run" in said
    run_snakemake(study, config=EXPORT_CONFIG)
    assert (results / "summary.csv").exists() and (results / "report.md").exists()
    assert not list(results.glob("*.stale.*"))
