"""Parity figures, and fp16 fidelity with true fp16 arithmetic (onnx's reference evaluator)
where ONNX Runtime's CPU provider computes in fp32, on scikit-learn's digits."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxstudy.data import digits_split
from onnxstudy.fidelity import (
    compare_outputs,
    reference_evaluator_outputs,
    top1_accuracy,
    true_fp16_parity,
    with_true_fp16_check,
)
from onnxstudy.precision import convert_fp16, run_model, save_loadable


@pytest.fixture(scope="module")
def images():
    """Held-out digits, [N, 1, 8, 8] in [0, 1]."""
    return digits_split(0)[2][:16]


def power_model(gain: float) -> onnx.ModelProto:
    """Root mean square of the pixels scaled by `gain`: its squares pass fp16's 65504 when
    `gain` is near 300."""
    nodes = [
        helper.make_node("Flatten", ["image"], ["pixels"], name="flatten"),
        helper.make_node("Mul", ["pixels", "gain"], ["scaled"], name="gain"),
        helper.make_node("Mul", ["scaled", "scaled"], ["squares"], name="square"),
        helper.make_node("ReduceMean", ["squares"], ["power"], name="mean", axes=[1]),
        helper.make_node("Sqrt", ["power"], ["rms"], name="root"),
    ]
    graph = helper.make_graph(
        nodes,
        "power",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 1, 8, 8])],
        [helper.make_tensor_value_info("rms", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(np.array([gain], np.float32), "gain")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize(("gain", "overflows"), [(300.0, True), (30.0, False)])
def test_true_fp16_arithmetic_shows_overflow_the_cpu_provider_hides(
    images, tmp_path, gain, overflows
):
    fp32 = power_model(gain)
    fp16, _ = convert_fp16(fp32, [])
    save_loadable(fp32, tmp_path / "fp32.onnx")
    save_loadable(fp16, tmp_path / "fp16.onnx")
    reference = run_model(tmp_path / "fp32.onnx", {"image": images})[0]

    on_cpu = run_model(tmp_path / "fp16.onnx", {"image": images})[0]
    true_fp16 = reference_evaluator_outputs(fp16, {"image": images[:2]})[0]

    assert compare_outputs(on_cpu, reference, {"min_cosine": 0.999}).verdict == "pass"
    assert np.isinf(true_fp16).any() == overflows
    parity = true_fp16_parity(tmp_path / "fp16.onnx", images, reference, {"min_cosine": 0.999})
    assert parity["samples"] == 2
    assert parity["verdict"] == ("fail" if overflows else "pass")
    merged = with_true_fp16_check({"verdict": "pass", "failures": []}, parity)
    assert merged["verdict"] == parity["verdict"]
    assert merged["reference_evaluator"] is parity
    if overflows:
        assert merged["failures"][0].startswith("true fp16 arithmetic: outputs contain inf")


def test_true_fp16_parity_reports_an_operator_it_cannot_run(images, tmp_path):
    """A contrib operator the reference evaluator lacks: the figures say why, the verdict
    stays with the other checks."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["pixels"]),
            helper.make_node("Gelu", ["pixels"], ["out"], domain="com.microsoft"),
        ],
        "gelu",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 64])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    reference = run_model(save_path(model, tmp_path), {"image": images})[0]

    parity = true_fp16_parity(model, images, reference, {"min_cosine": 0.999})

    assert "verdict" not in parity and "Gelu" in parity["error"]
    assert with_true_fp16_check({"verdict": "pass", "failures": []}, parity)["verdict"] == "pass"


def save_path(model: onnx.ModelProto, directory) -> str:
    path = directory / "model.onnx"
    save_loadable(model, path)
    return path


def test_compare_outputs_fails_non_finite_outputs_on_every_criterion(images):
    reference = images.reshape(len(images), -1)
    broken = reference.copy()
    broken[3, 5] = np.inf
    result = compare_outputs(broken, reference, {"atol": 1.0, "min_cosine": 0.9})
    assert result.verdict == "fail"
    assert result.max_abs_err == np.inf and np.isnan(result.cosine_min)
    assert result.failures[0] == "outputs contain inf or NaN"
    assert len(result.failures) == 3


def test_top1_accuracy_counts_matching_labels():
    _, _, _, labels = digits_split(0)
    logits = np.eye(10, dtype=np.float32)[labels]
    logits[:36] = np.roll(logits[:36], 1, axis=1)
    assert top1_accuracy(logits, labels)["accuracy"] == pytest.approx(1 - 36 / len(labels))
    assert top1_accuracy(logits, None)["accuracy"] is None
