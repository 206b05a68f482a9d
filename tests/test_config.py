"""onnxstudy.config: defaults merged into models, sources parsed, mistakes named."""

from __future__ import annotations

import pytest
import yaml
from snakemake.utils import validate

from onnxstudy.config import deep_merge, resolve_model
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


def test_deep_merge_leaves_inputs_untouched():
    base = {"a": {"x": 1, "y": 2}}
    merged = deep_merge(base, {"a": {"y": 3}})
    assert merged == {"a": {"x": 1, "y": 3}} and base == {"a": {"x": 1, "y": 2}}


def test_unknown_model_lists_the_configured_ones():
    with pytest.raises(ValueError, match="digits_cnn, mobilenet_v2"):
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
