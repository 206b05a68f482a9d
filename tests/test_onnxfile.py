"""onnxstudy.onnxfile: external data written when weights are big, kept by derived variants,
and counted in sizes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxstudy.onnxfile import (
    EXTERNAL_DATA_THRESHOLD_BYTES,
    derived_threshold,
    external_data_files,
    save_onnx,
    variant_size_bytes,
)
from onnxstudy.runtime import open_session


def linear_model(seed: int = 0) -> onnx.ModelProto:
    """x [N, 64] -> x @ W + b with W [64, 10] (2,560 bytes, above the 1 KiB tensor cut)."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((64, 10)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 10])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_variant_follows_the_layout_of_the_model_it_is_made_from(tmp_path):
    inline, external = tmp_path / "inline.onnx", tmp_path / "fp32.onnx"
    assert save_onnx(linear_model(), inline) is None
    assert save_onnx(linear_model(), external, external_data_threshold=1000) == "fp32.onnx.data"
    assert derived_threshold(inline) == EXTERNAL_DATA_THRESHOLD_BYTES
    assert derived_threshold(external) == 0

    variant = tmp_path / "fp16.onnx"
    save_onnx(onnx.load(external), variant, derived_threshold(external))
    assert external_data_files(variant) == [tmp_path / "fp16.onnx.data"]
    # Only W (2,560 bytes) moved out; b (40 bytes) stayed in the graph file.
    assert (tmp_path / "fp16.onnx.data").stat().st_size == 64 * 10 * 4
    assert variant_size_bytes(variant) == variant.stat().st_size + 64 * 10 * 4
    x = np.ones((3, 64), dtype=np.float32)
    expected = open_session(inline).run(x)[0]
    np.testing.assert_array_equal(open_session(variant).run(x)[0], expected)


def test_saving_beside_a_partial_file_of_the_same_name_works(tmp_path):
    """The int8 stage keeps the quantizer's output in `<name>.partial` while it saves."""
    out = tmp_path / "int8.onnx"
    (tmp_path / "int8.onnx.partial").write_bytes(b"quantizer output")
    save_onnx(linear_model(), out, external_data_threshold=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "int8.onnx",
        "int8.onnx.data",
        "int8.onnx.partial",
    ]


def test_an_inline_save_removes_a_stale_data_file(tmp_path):
    out = tmp_path / "fp32.onnx"
    save_onnx(linear_model(), out, external_data_threshold=0)
    save_onnx(linear_model(seed=1), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx"]
    assert variant_size_bytes(out) == out.stat().st_size
