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
    initializer_bytes,
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
    """A stray `<name>.partial` file beside the output is left alone."""
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


def test_writing_external_data_leaves_the_proto_whole_unless_told(tmp_path):
    """onnx's writer empties the tensors it moves to the data file; the proto a stage goes on
    using must keep its weights."""
    proto = linear_model()
    weight = numpy_helper.to_array(proto.graph.initializer[0])
    assert save_onnx(proto, tmp_path / "a.onnx", external_data_threshold=0) == "a.onnx.data"
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), weight)
    assert save_onnx(proto, tmp_path / "b.onnx") is None
    np.testing.assert_array_equal(
        numpy_helper.to_array(onnx.load(tmp_path / "b.onnx").graph.initializer[0]), weight
    )
    save_onnx(proto, tmp_path / "c.onnx", external_data_threshold=0, keep=False)
    assert proto.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL


def test_weight_bytes_come_from_shapes_not_from_serializing():
    assert initializer_bytes(linear_model()) == (64 * 10 + 10) * 4
