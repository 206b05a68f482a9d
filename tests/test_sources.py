"""onnxstudy.sources and data: real samples, meaningful seeded weights, offline weight loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from onnxstudy.config import resolve_model
from onnxstudy.data import make_samples, photo_crops
from onnxstudy.errors import StudyError
from onnxstudy.sources import (
    build_model,
    draw_samples,
    load_model,
    prepare_weights,
    reestimate_batchnorm,
    run_torch,
)

REPO = Path(__file__).resolve().parents[1]


def spec_for(**entry):
    return resolve_model(
        {"models": {"m": {"source": "torchvision:mobilenet_v3_small", **entry}}}, "m"
    )


@pytest.fixture(scope="module")
def crops():
    return photo_crops(24, (96, 96), seed=3)


def test_photo_crops_are_normalised_real_images(crops):
    assert crops.shape == (24, 3, 96, 96) and crops.dtype == np.float32
    # ImageNet-normalised photos: mean near 0, spread near 1, and crops differ from each other.
    assert abs(float(crops.mean())) < 1.0 and 0.5 < float(crops.std()) < 1.5
    assert np.abs(crops[0] - crops[1]).mean() > 0.1
    np.testing.assert_array_equal(crops, photo_crops(24, (96, 96), seed=3))


def test_digits_samples_have_a_fixed_labelled_split():
    samples = make_samples("digits", (1, 8, 8), 16, 16, seed=0)
    assert samples.train_x.shape == (1437, 1, 8, 8) and samples.evaluation_x.shape == (360, 1, 8, 8)
    assert sorted(np.unique(samples.evaluation_y)) == list(range(10))
    assert samples.calibration_x.shape == (16, 1, 8, 8)
    assert samples.train_x.min() >= 0.0 and samples.train_x.max() <= 1.0


def test_batchnorm_reestimation_turns_flat_seeded_outputs_into_real_ones(crops):
    model = build_model(spec_for())
    before = np.abs(run_torch(model, crops[:8])).mean()
    record = reestimate_batchnorm(model, crops)
    after = run_torch(model, crops[:8])
    assert record["batchnorm_layers"] > 10
    assert before < 1e-3 < np.abs(after).mean()
    # Different photos now give different outputs.
    assert np.abs(after[0] - after[1]).max() > 1e-3


def test_weights_from_a_local_file_are_loaded_exactly(tmp_path, crops):
    source = build_model(spec_for())
    reestimate_batchnorm(source, crops)
    torch.save(source.state_dict(), tmp_path / "mine.pt")
    spec = spec_for(weights=str(tmp_path / "mine.pt"))
    samples = make_samples("photos", (3, 96, 96), 4, 4, seed=0)
    record = prepare_weights(spec, samples, tmp_path / "weights.pt")
    assert record["origin"] == "file"
    loaded = load_model(spec, tmp_path / "weights.pt")
    np.testing.assert_array_equal(run_torch(loaded, crops[:4]), run_torch(source, crops[:4]))


def test_weights_that_do_not_fit_name_the_architecture(tmp_path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "wrong.pt")
    spec = spec_for(weights=str(tmp_path / "wrong.pt"))
    samples = make_samples("photos", (3, 64, 64), 2, 2, seed=0)
    with pytest.raises(StudyError, match="do not fit torchvision:mobilenet_v3_small"):
        prepare_weights(spec, samples, tmp_path / "weights.pt")


def test_torchvision_weights_come_from_the_cache_and_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = spec_for(weights="MobileNet_V3_Small_Weights.IMAGENET1K_V1")
    samples = make_samples("photos", (3, 64, 64), 2, 2, seed=0)
    with pytest.raises(StudyError, match="never downloads"):
        prepare_weights(spec, samples, tmp_path / "weights.pt")

    # A file placed in the cache (as a connected machine would leave it) is used.
    from torchvision.models import get_weight

    cached = Path(tmp_path) / "hub" / "checkpoints" / Path(get_weight(spec.weights).url).name
    cached.parent.mkdir(parents=True)
    torch.save(build_model(spec).state_dict(), cached)
    record = prepare_weights(spec, samples, tmp_path / "weights.pt")
    assert record["origin"] == "torchvision-cache" and record["path"] == str(cached)


def test_an_unknown_torchvision_model_is_a_clear_error():
    with pytest.raises(StudyError, match="torchvision has no model 'mobilenet_v9'"):
        build_model(resolve_model({"models": {"m": {"source": "torchvision:mobilenet_v9"}}}, "m"))


def python_spec(**entry):
    source = {"source": "python:examples/my_model.py:build_model", "dataset": "digits"}
    return resolve_model({"models": {"mine": {**source, **entry}}}, "mine")


def test_a_python_model_is_trained_saved_and_loaded_like_a_builtin(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the source's path is relative to the folder the study runs in
    spec = python_spec(train={"epochs": 2, "batch_size": 32, "lr": 1e-3})
    samples = draw_samples(spec)
    record = prepare_weights(spec, samples, tmp_path / "weights.pt")
    assert record["origin"] == "trained" and record["class"] == "TinyDigitsNet"
    assert record["train_accuracy"] > 0.8
    model = load_model(spec, tmp_path / "weights.pt")
    logits = run_torch(model, samples.evaluation_x)
    assert (logits.argmax(1) == samples.evaluation_y).mean() > 0.8


def test_a_python_model_without_a_dataset_gets_seeded_inputs_of_its_dtype(monkeypatch):
    monkeypatch.chdir(REPO)
    spec = python_spec(dataset="random", input_shape=[5], dtype="int64", evaluation_samples=6)
    samples = draw_samples(spec)
    assert samples.evaluation_x.shape == (6, 5) and samples.evaluation_x.dtype == np.int64
    assert samples.train_x is None and samples.evaluation_y is None
    again = draw_samples(spec)
    np.testing.assert_array_equal(samples.calibration_x, again.calibration_x)
    # A float dtype on a real dataset casts the real samples.
    cast = draw_samples(python_spec(dtype="float64"))
    assert cast.evaluation_x.dtype == np.float64 and cast.evaluation_x.shape[1:] == (1, 8, 8)
