"""onnxstudy.usermodel: `python:<file.py>:<callable>` models, their weights, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onnxstudy.data import digits_split
from onnxstudy.errors import StudyError
from onnxstudy.export import ExportOptions, check_data_dependence, export_model, torch_outputs
from onnxstudy.runtime import run_onnx
from onnxstudy.usermodel import (
    build_user_model,
    check_forward,
    example_input,
    input_dtype,
    load_user_model,
    parse_python_target,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = "tests/data/user_models.py"


@pytest.fixture(scope="module")
def digits_images():
    return digits_split(0)[2][:40]


def test_the_worked_example_loads_exports_and_matches_pytorch(tmp_path, digits_images):
    model, record = load_user_model("examples/my_model.py:build_model", "mine", base_dir=REPO)
    assert record == {"origin": "seeded", "seed": 0, "class": "TinyDigitsNet", "parameters": 9962}
    export_model(model, digits_images[:2], tmp_path / "fp32.onnx", ExportOptions(), "mine")
    diff = (
        run_onnx(tmp_path / "fp32.onnx", digits_images) - torch_outputs(model, [digits_images])[0]
    )
    assert np.abs(diff).max() < 1e-4
    result = check_data_dependence(model, tmp_path / "fp32.onnx", digits_images, example_batch=2)
    assert result["verdict"] == "consistent"


def test_a_class_and_a_factory_give_the_same_seeded_weights():
    by_class = build_user_model("examples/my_model.py:TinyDigitsNet", "m", REPO, seed=3)
    by_factory = build_user_model("examples/my_model.py:build_model", "m", REPO, seed=3)
    other_seed = build_user_model("examples/my_model.py:build_model", "m", REPO, seed=4)
    first = by_class.state_dict()["classifier.weight"]
    assert torch.equal(first, by_factory.state_dict()["classifier.weight"])
    assert not torch.equal(first, other_seed.state_dict()["classifier.weight"])
    assert not by_class.training


def test_a_state_dict_file_is_loaded(tmp_path, digits_images):
    trained = build_user_model(f"{FIXTURES}:TwoLayer", "m", REPO, seed=7)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    torch.save({"epoch": 3, "state_dict": trained.state_dict()}, tmp_path / "checkpoint.pt")
    for weights in ("w.pt", "checkpoint.pt"):
        model, record = load_user_model(f"{FIXTURES}:TwoLayer", "m", tmp_path / weights, REPO)
        assert record["origin"] == "file" and record["tensors"] == 4
        np.testing.assert_array_equal(
            torch_outputs(model, [digits_images])[0], torch_outputs(trained, [digits_images])[0]
        )


@pytest.mark.parametrize(
    ("target", "cause", "cure"),
    [
        ("examples/missing.py:build", "missing.py does not exist", "relative to the folder"),
        (f"{FIXTURES}:Absent", "has no 'Absent'", "NeedsArguments, TwoLayer, fails_inside"),
        (f"{FIXTURES}:not_a_module", "returned a dict, not a torch.nn.Module", "return the"),
        (f"{FIXTURES}:LAYER_WIDTH", "is a int, not a class or function", "nn.Module subclass"),
        (f"{FIXTURES}:NeedsArguments", "cannot be called without arguments", "defaults"),
        (f"{FIXTURES}:fails_inside", "failed at line 36: ValueError: no layer", "without"),
        (
            "tests/data/user_model_import_fails.py:build",
            "failed at line 3: ModuleNotFoundError",
            "runs without error",
        ),
        ("examples/my_model.py", "is not understood", "python:<file.py>:<callable>"),
    ],
)
def test_mistakes_are_explained(target, cause, cure):
    with pytest.raises(StudyError) as caught:
        build_user_model(target, "mine", REPO)
    assert cause in caught.value.cause and cure in caught.value.cure
    assert caught.value.model == "mine"


@pytest.mark.parametrize(
    ("target", "shape", "cause", "cure"),
    [
        (
            f"{FIXTURES}:TwoLayer",
            (3, 8, 8),
            "fails in PyTorch on its samples, [2, 3, 8, 8] float32 at line 18 of "
            "user_models.py: RuntimeError: mat1 and mat2 shapes cannot be multiplied",
            "set `input_shape:`",
        ),
        (f"{FIXTURES}:pair_output", (1, 8, 8), "returns a tuple, not one tensor", "one tensor"),
        (f"{FIXTURES}:total_output", (64,), "to shape [], without the batch axis", "batch axis"),
    ],
)
def test_a_forward_that_cannot_serve_is_explained_before_any_export(target, shape, cause, cure):
    model = build_user_model(target, "mine", REPO)
    inputs = digits_split(0)[2][:4].reshape(4, -1)
    with pytest.raises(StudyError) as caught:
        check_forward(model, np.resize(inputs, (4, *shape)).astype(np.float32), "mine")
    assert cause in caught.value.cause and cure in caught.value.cure
    check_forward(build_user_model(f"{FIXTURES}:TwoLayer", "m", REPO), inputs, "m")


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    wider = build_user_model(f"{FIXTURES}:wider", "m", REPO)
    torch.save(wider.state_dict(), tmp_path / "wider.pt")
    with pytest.raises(StudyError) as caught:
        load_user_model(f"{FIXTURES}:TwoLayer", "m", tmp_path / "wider.pt", REPO)
    assert "3 shape (file vs model): hidden.weight (16, 64) vs (8, 64)" in caught.value.cause

    state = wider.state_dict()
    state["extra.bias"] = state.pop("out.bias")
    torch.save(state, tmp_path / "renamed.pt")
    with pytest.raises(StudyError) as caught:
        load_user_model(f"{FIXTURES}:wider", "m", tmp_path / "renamed.pt", REPO)
    assert "1 missing: out.bias; 1 unexpected: extra.bias" in caught.value.cause


def test_a_pickled_model_or_a_missing_file_is_refused(tmp_path):
    model = build_user_model("examples/my_model.py:build_model", "m", REPO)
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(StudyError, match="torch.save\\(model.state_dict\\(\\), path\\)"):
        load_user_model("examples/my_model.py:build_model", "m", tmp_path / "whole.pt", REPO)
    with pytest.raises(StudyError, match="does not exist"):
        load_user_model("examples/my_model.py:build_model", "m", tmp_path / "none.pt", REPO)


def test_example_inputs_take_the_configured_shape_and_dtype():
    assert parse_python_target("C:/models/net.py:Net", "m") == ("C:/models/net.py", "Net")
    tokens = example_input((12,), str(input_dtype("int64", "m")), batch=3, high=100)
    assert tokens.shape == (3, 12) and tokens.dtype == np.int64
    assert tokens.min() >= 0 and tokens.max() < 100 and len(np.unique(tokens)) > 10
    images = example_input((1, 8, 8), "float16", seed=1)
    assert images.shape == (2, 1, 8, 8) and images.dtype == np.float16
    with pytest.raises(StudyError, match="set `dtype:` to one of float32"):
        input_dtype("complex64", "m")
