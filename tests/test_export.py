"""onnxstudy.export: a loadable, checked fp32 file matching PyTorch, with zoo test data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxstudy.config import resolve_model
from onnxstudy.data import digits_split
from onnxstudy.errors import StudyError
from onnxstudy.export import MAX_IR_VERSION, export_to_onnx, write_reference_test_data
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
