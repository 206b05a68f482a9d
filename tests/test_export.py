"""onnxstudy.export: loadable, checked files; exporter choice, failures that name their cause,
data-dependent models flagged, external data for large weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from onnxstudy.config import resolve_model
from onnxstudy.data import digits_split
from onnxstudy.errors import StudyError
from onnxstudy.export import (
    EXPORTER_MAX_OPSET,
    MAX_IR_VERSION,
    ExportOptions,
    check_data_dependence,
    export_and_verify,
    export_model,
    export_to_onnx,
    write_reference_test_data,
)
from onnxstudy.onnxfile import external_data_files, save_onnx, variant_size_bytes
from onnxstudy.runtime import run_onnx
from onnxstudy.sources import build_model, run_torch
from onnxstudy.zoo import read_test_data_set

CONFIG = {"models": {"digits": {"source": "builtin:digits_cnn"}}}


@pytest.fixture(scope="module")
def digits_images():
    return digits_split(0)[2][:40]


def test_export_matches_pytorch_at_other_batch_sizes(tmp_path, digits_images):
    spec = resolve_model(CONFIG, "digits")
    model = build_model(spec)
    record = export_to_onnx(model, digits_images[:2], tmp_path / "fp32.onnx", spec)

    proto = onnx.load(tmp_path / "fp32.onnx")
    assert proto.ir_version <= MAX_IR_VERSION
    assert proto.opset_import[0].version == 17
    assert record["nodes"] == len(proto.graph.node) and "Conv" in record["op_types"]
    assert record["example_max_abs_err"] < 1e-4
    # The batch axis is dynamic: 40 images in one call match PyTorch too.
    diff = np.abs(
        run_onnx(tmp_path / "fp32.onnx", digits_images, 40) - run_torch(model, digits_images)
    )
    assert diff.max() < 1e-4
    assert not (tmp_path / "fp32.onnx.partial").exists()


def test_reference_test_data_round_trips(tmp_path, digits_images):
    model = build_model(resolve_model(CONFIG, "digits"))
    write_reference_test_data(model, digits_images[:3], tmp_path / "test_data_set_0")
    inputs, outputs = read_test_data_set(tmp_path / "test_data_set_0")
    assert [name for name, _ in inputs] == ["input"]
    np.testing.assert_array_equal(inputs[0][1], digits_images[:3])
    np.testing.assert_allclose(outputs[0][1], run_torch(model, digits_images[:3]))


def test_an_opset_the_runtime_cannot_load_is_refused_with_the_cure(tmp_path, digits_images):
    config = {"models": {"digits": {"source": "builtin:digits_cnn", "opset": 27}}}
    spec = resolve_model(config, "digits")
    with pytest.raises(StudyError, match="set `opset:` to 26 or lower"):
        export_to_onnx(build_model(spec), digits_images[:2], tmp_path / "m.onnx", spec)
    assert not (tmp_path / "m.onnx").exists()


def test_an_opset_past_the_tracing_exporter_is_refused_with_the_other_exporter(
    tmp_path, digits_images
):
    # Opsets 24-26 load in the runtime, but torch's tracing exporter writes at most 23.
    assert EXPORTER_MAX_OPSET["torchscript"] == torch.onnx._constants.ONNX_MAX_OPSET
    options = ExportOptions(opset=24)
    with pytest.raises(StudyError) as caught:
        export_model(BranchOnSign(), digits_images[:2], tmp_path / "m.onnx", options, "b")
    assert "at most opset 23, not 24" in caught.value.cause
    assert caught.value.cure.startswith("set `exporter: dynamo` for opsets 24-26")
    assert not (tmp_path / "m.onnx").exists()


class BranchOnSign(nn.Module):
    """Takes one of two branches on its input's values: tracing keeps only the one it saw."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


class FlattenByBatch(nn.Module):
    """Reads the batch size from the shape: the TorchScript exporter keeps it symbolic."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(x.shape[0], -1))


class FlattenByFrozenBatch(FlattenByBatch):
    """Turns the batch size into a Python int: the trace freezes it at the example's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.reshape(int(x.shape[0]), -1))


class GridSample(nn.Module):
    """grid_sample exists in ONNX from opset 16 on."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = torch.zeros(x.shape[0], 4, 4, 2)
        return nn.functional.grid_sample(x, grid, align_corners=False)


def test_a_model_branching_on_values_is_flagged_on_negated_inputs(tmp_path, digits_images):
    model = BranchOnSign()
    record = export_model(model, digits_images[:2], tmp_path / "m.onnx", ExportOptions(), "b")
    # The exporter said so, at the line of the branch.
    [warning] = record["trace_warnings"]
    assert "Python boolean" in warning and "test_export.py:" in warning

    result = check_data_dependence(model, tmp_path / "m.onnx", digits_images, example_batch=2)
    # Digits are >= 0: the traced branch is `x * 2`; only negated inputs take the other one.
    assert result["verdict"] == "diverges"
    assert result["diverging_inputs"] == ["negated, batch 1", "negated, batch 5"]
    negated = [case for case in result["cases"] if case["variation"] == "negated"]
    # PyTorch computes -x - 1, the file -2x: the error is half the largest |x| or more.
    assert all(case["max_rel_err"] > 0.3 for case in negated)
    assert json.loads(json.dumps(result)) == result


def test_shape_dependent_code_that_exports_correctly_is_consistent(tmp_path, digits_images):
    model = FlattenByBatch().eval()
    record = export_model(model, digits_images[:2], tmp_path / "m.onnx", ExportOptions(), "f")
    assert record["trace_warnings"] == []
    result = check_data_dependence(model, tmp_path / "m.onnx", digits_images, example_batch=2)
    assert result["verdict"] == "consistent" and result["diverging_inputs"] == []
    assert {case["batch"] for case in result["cases"]} == {1, 5}
    assert len(result["cases"]) == 10
    assert max(case["max_rel_err"] for case in result["cases"]) < 1e-5


def test_a_batch_size_frozen_by_the_trace_diverges_at_every_other_batch(tmp_path, digits_images):
    model = FlattenByFrozenBatch().eval()
    export_model(model, digits_images[:2], tmp_path / "m.onnx", ExportOptions(), "frozen")
    result = check_data_dependence(model, tmp_path / "m.onnx", digits_images, example_batch=2)
    assert result["verdict"] == "diverges" and len(result["diverging_inputs"]) == 10
    assert all(case["reason"].startswith("ONNX Runtime:") for case in result["cases"])


def test_the_export_record_has_what_a_reader_needs(tmp_path, digits_images):
    model = build_model(resolve_model(CONFIG, "digits"))
    record = export_model(model, digits_images[:2], tmp_path / "m.onnx", ExportOptions(), "d")
    proto = onnx.load(tmp_path / "m.onnx")
    assert record["exporter"] == "torchscript" and record["opset"] == 17
    assert record["ir_version"] == proto.ir_version <= MAX_IR_VERSION
    assert record["nodes"] == len(proto.graph.node) == sum(record["op_types"].values())
    assert record["size_bytes"] == (tmp_path / "m.onnx").stat().st_size
    assert record["external_data"] is None
    assert record["total_seconds"] >= record["seconds"] > 0
    assert record["peak_rss_bytes"] > record["peak_rss_increase_bytes"] >= 0
    assert record["peak_memory_method"].startswith("ru_maxrss")
    assert any(w.startswith("DeprecationWarning") for w in record["warnings"])


def test_an_operator_of_a_newer_opset_is_named_with_the_opset_to_set(tmp_path, digits_images):
    options = ExportOptions(opset=15)
    with pytest.raises(StudyError) as caught:
        export_model(GridSample(), digits_images[:2], tmp_path / "m.onnx", options, "gs")
    assert "aten::grid_sampler" in caught.value.cause
    assert caught.value.cure.startswith("set `opset: 16`")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.onnx.partial").exists()


def test_a_dynamo_failure_names_the_source_line_and_the_other_exporter(tmp_path, digits_images):
    options = ExportOptions(exporter="dynamo")
    with pytest.raises(StudyError) as caught:
        export_model(BranchOnSign(), digits_images[:2], tmp_path / "m.onnx", options, "b")
    assert "GuardOnDataDependentSymNode" in caught.value.cause
    assert "test_export.py:" in caught.value.cause and "if x.sum() > 0:" in caught.value.cause
    assert "`exporter: torchscript`" in caught.value.cure


def test_the_dynamo_exporter_writes_a_file_the_runtime_loads(tmp_path, digits_images):
    spec = resolve_model(CONFIG, "digits")
    model = build_model(spec)
    record = export_to_onnx(model, digits_images[:2], tmp_path / "m.onnx", spec, exporter="dynamo")
    assert record["exporter"] == "dynamo" and record["opset_requested"] == 17
    assert record["opset"] in (17, 18) and record["ir_version"] <= MAX_IR_VERSION
    assert record["example_max_abs_err"] < 1e-4
    diff = run_onnx(tmp_path / "m.onnx", digits_images, 40) - run_torch(model, digits_images)
    assert np.abs(diff).max() < 1e-4


def test_an_unknown_exporter_is_refused_before_any_work(tmp_path, digits_images):
    with pytest.raises(StudyError, match="set `exporter:` to one of torchscript, dynamo"):
        export_model(
            BranchOnSign(), digits_images[:2], tmp_path / "m.onnx", ExportOptions("jit"), "b"
        )


def test_weights_above_the_threshold_go_to_one_data_file_that_moves_with_it(
    tmp_path, digits_images
):
    spec = resolve_model(CONFIG, "digits")
    model = build_model(spec)
    folder = tmp_path / "digits"
    folder.mkdir()
    record = export_to_onnx(
        model, digits_images[:2], folder / "fp32.onnx", spec, external_data_threshold=1000
    )
    onnx_file, data_file = folder / "fp32.onnx", folder / "fp32.onnx.data"
    assert record["external_data"] == "fp32.onnx.data"
    assert sorted(p.name for p in folder.iterdir()) == ["fp32.onnx", "fp32.onnx.data"]
    assert external_data_files(onnx_file) == [data_file]
    assert data_file.stat().st_mode == onnx_file.stat().st_mode
    # The weights (~750 KB) are in the data file; the graph file keeps only small tensors.
    assert data_file.stat().st_size > 700_000 and onnx_file.stat().st_size < 20_000
    assert variant_size_bytes(onnx_file) == onnx_file.stat().st_size + data_file.stat().st_size
    assert record["size_bytes"] == variant_size_bytes(onnx_file)
    assert record["example_max_abs_err"] < 1e-4
    onnx.checker.check_model(str(onnx_file), full_check=True)

    moved = shutil.move(folder, tmp_path / "elsewhere") / Path("fp32.onnx")
    proto = onnx.load(moved)
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    state = model.state_dict()
    np.testing.assert_array_equal(weights["head.weight"], state["head.weight"].numpy())
    diff = run_onnx(moved, digits_images, 40) - run_torch(model, digits_images)
    assert np.abs(diff).max() < 1e-4

    # Written again under the default threshold, the stale data file goes away.
    assert save_onnx(proto, moved) is None
    assert sorted(p.name for p in moved.parent.iterdir()) == ["fp32.onnx"]
    assert variant_size_bytes(moved) == moved.stat().st_size > 700_000


def test_the_workflow_export_records_its_check_and_writes_test_data(tmp_path, digits_images):
    config = {"models": {"frozen": {"source": "builtin:digits_cnn", "external_data_threshold": 0}}}
    spec = resolve_model(config, "frozen")
    record = export_and_verify(
        FlattenByFrozenBatch().eval(),
        spec,
        digits_images,
        tmp_path / "fp32.onnx",
        tmp_path / "test_data_set_0",
    )
    assert record["external_data"] == "fp32.onnx.data"
    check = record["data_dependence"]
    assert check["verdict"] == "diverges" and "as is, batch 1" in check["diverging_inputs"]
    inputs, _ = read_test_data_set(tmp_path / "test_data_set_0")
    np.testing.assert_array_equal(inputs[0][1], digits_images[:2])
    assert json.loads(json.dumps(record, default=str))["exporter"] == "torchscript"
