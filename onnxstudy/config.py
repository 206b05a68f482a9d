"""Model specifications resolved from config.yaml (defaults merged into each model)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

SOURCE_KINDS = ("builtin", "torchvision")
ONNX_VARIANTS = ("fp32", "fp16", "int8")
TORCHVISION_INPUT_SHAPE = (3, 224, 224)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the stages need to know about one configured model.

    Attributes:
        name: Key of the model under `models:` in config.yaml.
        kind: Source kind: `builtin` or `torchvision`.
        target: What follows the kind in the source string (e.g. `mobilenet_v2`).
        input_shape: Shape of one sample, without the batch axis.
        dataset: Where samples come from: `digits` (labelled) or `photos` (unlabelled crops).
        weights: A state-dict file or a torchvision weights name; None means seeded weights.
        variants: ONNX variants to build, in order.
        opset: ONNX opset the exporter writes.
        seed: Seed of every random choice for this model.
        calibration_samples: Number of samples int8 calibration reads.
        evaluation_samples: Number of samples parity and accuracy use (digits: its test split).
        tolerances: Per variant, the parity criteria (atol, rtol, min_cosine, min_top1_agreement).
        int8: The static quantization recipe (method, format, per_channel, ...).
        train: Training settings of builtin models (epochs, batch_size, lr).
    """

    name: str
    kind: str
    target: str
    input_shape: tuple[int, ...]
    dataset: str
    weights: str | None
    variants: tuple[str, ...]
    opset: int
    seed: int
    calibration_samples: int
    evaluation_samples: int
    tolerances: dict[str, dict[str, float]] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{self.kind}:{self.target}"

    @property
    def has_labels(self) -> bool:
        """True when the evaluation samples carry ground-truth labels (accuracy is real)."""
        return self.dataset == "digits"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Return `base` updated with `override`, merging nested dictionaries key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_model(config: dict[str, Any], name: str) -> ModelSpec:
    """Build the ModelSpec of model `name` from a validated config.

    Raises:
        ValueError: When the model is not configured or its source is malformed.
    """
    models = config.get("models", {})
    if name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ValueError(f"model '{name}' is not in config.yaml (configured: {known})")
    entry = deep_merge(config.get("defaults", {}), models[name])

    kind, sep, target = str(entry["source"]).partition(":")
    if not sep or kind not in SOURCE_KINDS or not target:
        raise ValueError(
            f"model '{name}': source '{entry['source']}' is not understood; "
            f"write it as <kind>:<name> with kind one of {', '.join(SOURCE_KINDS)}"
        )
    dataset = entry.get("dataset") or ("digits" if kind == "builtin" else "photos")
    default_shape = (1, 8, 8) if dataset == "digits" else TORCHVISION_INPUT_SHAPE
    input_shape = tuple(entry.get("input_shape") or default_shape)

    return ModelSpec(
        name=name,
        kind=kind,
        target=target,
        input_shape=input_shape,
        dataset=dataset,
        weights=entry.get("weights"),
        variants=tuple(entry.get("variants", ONNX_VARIANTS)),
        opset=int(entry.get("opset", 17)),
        seed=int(entry.get("seed", config.get("seed", 0))),
        calibration_samples=int(entry.get("calibration_samples", 32)),
        evaluation_samples=int(entry.get("evaluation_samples", 64)),
        tolerances=dict(entry.get("tolerances", {})),
        int8=dict(entry.get("int8", {})),
        train=dict(entry.get("train", {})),
    )
