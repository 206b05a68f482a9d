"""Write the `digits_mlp` Model Zoo example beside this file: model.onnx and its tests.

A scikit-learn MLP (64 -> 32 ReLU -> 10) is trained on scikit-learn's handwritten digits (the
study's own 80/20 split, seed 0), and its weights are written as an ONNX graph by hand with
two outputs, `logits` and `probabilities`. The reference outputs come from scikit-learn and
NumPy, not from ONNX Runtime, so the study checks the runtime against an independent
computation. Test 0 is a `test_data_set_0/` folder (tensors named as the graph's inputs),
test 1 a `test_data_0.npz` (inputs and outputs by position). Run it from the repository root:

    python zoo/digits_mlp/generate.py
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from onnxstudy.data import digits_split
from onnxstudy.zoo import GraphSignature, write_npz_test, write_test_data_set

HERE = Path(__file__).resolve().parent
SEED = 0
HIDDEN = 32
TEST_ROWS = 16
OPSET = 17
IR_VERSION = 8


def train() -> tuple[MLPClassifier, np.ndarray, np.ndarray]:
    """The trained MLP and the flattened held-out images ([N, 64] float32) with their labels."""
    train_x, train_y, test_x, test_y = digits_split(SEED)
    mlp = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=600, random_state=SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        mlp.fit(train_x.reshape(len(train_x), -1), train_y)
    return mlp, test_x.reshape(len(test_x), -1), test_y


def to_onnx(mlp: MLPClassifier) -> onnx.ModelProto:
    """The MLP as pixels [N, 64] -> logits [N, 10] and probabilities [N, 10] (softmax)."""
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    weights = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    nodes = [
        helper.make_node("MatMul", ["pixels", "w1"], ["hidden_mm"]),
        helper.make_node("Add", ["hidden_mm", "b1"], ["hidden_pre"]),
        helper.make_node("Relu", ["hidden_pre"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "w2"], ["logits_mm"]),
        helper.make_node("Add", ["logits_mm", "b2"], ["scores"]),
        # Outputs are not consumed inside the graph: onnxconverter-common's fp16 conversion
        # with kept float32 outputs breaks on an output that another node reads.
        helper.make_node("Identity", ["scores"], ["logits"]),
        helper.make_node("Softmax", ["scores"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 64])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10]),
        ],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="onnxstudy zoo/digits_mlp/generate.py",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def reference_outputs(mlp: MLPClassifier, pixels: np.ndarray) -> list[np.ndarray]:
    """Logits computed with NumPy in float64 from the MLP's weights, and scikit-learn's own
    predict_proba, both as float32."""
    (w1, w2), (b1, b2) = mlp.coefs_, mlp.intercepts_
    hidden = np.maximum(pixels.astype(np.float64) @ w1 + b1, 0.0)
    logits = hidden @ w2 + b2
    return [logits.astype(np.float32), mlp.predict_proba(pixels).astype(np.float32)]


def main() -> None:
    mlp, pixels, labels = train()
    model = to_onnx(mlp)
    onnx.save(model, HERE / "model.onnx")
    signature = GraphSignature.of(model)

    tests = [pixels[:TEST_ROWS], pixels[TEST_ROWS : 2 * TEST_ROWS]]
    expected = [reference_outputs(mlp, batch) for batch in tests]
    write_test_data_set(
        HERE / "test_data_set_0",
        dict(zip(signature.input_names, [tests[0]], strict=True)),
        dict(zip(signature.output_names, expected[0], strict=True)),
    )
    write_npz_test(HERE / "test_data_0.npz", [tests[1]], expected[1])

    accuracy = float((mlp.predict(pixels) == labels).mean())
    size = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file() and p.suffix != ".py")
    print(f"digits_mlp: held-out accuracy {accuracy:.4f} on {len(labels)} images, {size} bytes")


if __name__ == "__main__":
    main()
