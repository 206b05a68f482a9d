"""Model specifications resolved from config.yaml (defaults merged into each model)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from onnxstudy.onnxfile import EXTERNAL_DATA_THRESHOLD_BYTES

SOURCE_KINDS = ("builtin", "torchvision", "onnx", "python", "hf")
# Where samples come from when a model sets no `dataset:`; Model Zoo models use their tests.
# A `python:` model without one gets seeded stand-in inputs of its `input_shape` and `dtype`.
# An `hf:` sentence encoder reads the sentences shipped in onnxstudy/sentences.txt.
DEFAULT_DATASETS = {
    "builtin": "digits",
    "torchvision": "photos",
    "python": "random",
    "hf": "sentences",
}
ONNX_VARIANTS = ("fp32", "fp16", "int8")
TORCHVISION_INPUT_SHAPE = (3, 224, 224)
# torchvision's detection models (torchvision.models.list_models(module=...detection)); a
# test checks this pattern against that list. They take one image [3, H, W] in [0, 1].
DETECTION_MODEL_PATTERN = r"(fasterrcnn|fcos|keypointrcnn|maskrcnn|retinanet|ssd|ssdlite)\d*_\w+"
# Height and width of a detector's export example: the short side of the *_320_fpn models.
DETECTION_INPUT_SHAPE = (3, 320, 320)
# Image sizes (height, width) detection parity checks besides the export size: non-square,
# no side a multiple of 32, smaller and larger than 320x320.
DETECTION_CHECK_SIZES = ((241, 305), (375, 500), (450, 613))
EXPORTERS = ("torchscript", "dynamo")
# Static int8 variants beyond `int8` are named int8_<recipe> and configured under int8_recipes.
INT8_RECIPE_VARIANT = r"int8_[a-z0-9]+"
# Tokens per input an `hf:` model is timed at when its `benchmark:` sets no sequence_lengths.
DEFAULT_SEQUENCE_LENGTHS = (16, 128)
# Dynamic int8 with 8-bit block-wise weights (MatMulNBits); built for `hf:` models only.
BLOCK_INT8_VARIANT = "int8dyn_block"
# Every variant name a rule may see: the PyTorch baseline, fp32, fp16, static and dynamic int8.
VARIANT_PATTERN = rf"torch|fp32|fp16|{BLOCK_INT8_VARIANT}|int8dyn|int8|{INT8_RECIPE_VARIANT}"
ONNX_VARIANT_PATTERN = rf"fp32|fp16|{BLOCK_INT8_VARIANT}|int8dyn|int8|{INT8_RECIPE_VARIANT}"
STATIC_INT8_PATTERN = rf"int8|{INT8_RECIPE_VARIANT}"
# Parity criteria of a variant the config gives none (those of the default config.yaml), so
# that a config without `tolerances:` still checks every variant instead of passing it unseen.
DEFAULT_TOLERANCES = {
    "fp32": {"atol": 1.0e-4, "rtol": 1.0e-3},
    "fp16": {"min_cosine": 0.999},
    "int8": {"min_cosine": 0.98},
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything the stages need to know about one configured model.

    Attributes:
        name: Key of the model under `models:` in config.yaml.
        kind: Source kind: `builtin`, `torchvision`, `onnx`, `python` or `hf`.
        target: What follows the kind in the source string (e.g. `mobilenet_v2`).
        input_shape: Shape of one sample, without the batch axis.
        dataset: Where samples come from: `digits` (labelled) or `photos` (unlabelled crops);
            None for a Model Zoo model without one (its tests' inputs are the samples);
            `random` (seeded stand-ins) for a `python:` model without one; `sentences` (the
            shipped sentences, tokenized) for an `hf:` model.
        weights: A state-dict file or a torchvision weights name; None means seeded weights.
        variants: ONNX variants to build, in order.
        opset: ONNX opset the exporter writes.
        seed: Seed of every random choice for this model.
        calibration_samples: Number of samples int8 calibration reads.
        evaluation_samples: Number of samples parity and accuracy use (digits: its test split).
        tolerances: Per variant, the parity criteria (atol, rtol, min_cosine, min_top1_agreement).
        int8: The static quantization recipe (method, format, per_channel, ...).
        train: Training settings of builtin models (epochs, batch_size, lr).
        trusted_npz: Model Zoo `.npz` test files whose pickled arrays may be loaded.
        int8_recipes: Recipes of the int8_<name> variants, each overriding `int8`.
        int8dyn: Dynamic int8 settings (per_channel, reduce_range, weight_type, force).
        fp16: fp16 conversion settings (check_samples, reference_samples, keep_fp32_ops).
        exporter: `torchscript` (tracing, the default) or `dynamo` (torch.export).
        external_data_threshold: Weight bytes above which fp32.onnx keeps its weights in
            `fp32.onnx.data` (default 2e9, below protobuf's 2 GiB); its variants follow it.
        dtype: numpy name of the input's element type (`python:` sources; default float32).
        task: `detection` for torchvision's detection models, `embedding` for `hf:` sentence
            encoders, else `classification`.
        sizes: Detectors: image sizes (height, width) parity checks besides the export size.
        benchmark: Overrides of the study's benchmark `warmup`, `runs` and `batch_sizes` for
            this model, and, for `hf:` models, the `sequence_lengths` (tokens) it is timed at.
    """

    name: str
    kind: str
    target: str
    input_shape: tuple[int, ...]
    dataset: str | None
    weights: str | None
    variants: tuple[str, ...]
    opset: int
    seed: int
    calibration_samples: int
    evaluation_samples: int
    tolerances: dict[str, dict[str, float]] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    trusted_npz: tuple[str, ...] = ()
    int8_recipes: dict[str, dict[str, Any]] = field(default_factory=dict)
    int8dyn: dict[str, Any] = field(default_factory=dict)
    fp16: dict[str, Any] = field(default_factory=dict)
    exporter: str = "torchscript"
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD_BYTES
    dtype: str = "float32"
    task: str = "classification"
    sizes: tuple[tuple[int, int], ...] = ()
    benchmark: dict[str, int] = field(default_factory=dict)

    def int8_recipe(self, variant: str) -> dict[str, Any]:
        """The static int8 recipe of `variant`: `int8` itself, or int8_recipes[variant] over it.

        Raises:
            ValueError: When `variant` has no recipe.
        """
        if variant == "int8":
            return dict(self.int8)
        if variant not in self.int8_recipes:
            raise ValueError(
                f"model '{self.name}': variant '{variant}' has no recipe; add it under "
                f"`int8_recipes:`, e.g. `int8_recipes: {{{variant}: {{method: percentile}}}}`"
            )
        return {**self.int8, **self.int8_recipes[variant]}

    def tolerance(self, variant: str) -> dict[str, float]:
        """The parity criteria of `variant`; int8_<recipe> and int8dyn fall back to int8's,
        and a variant with none configured takes DEFAULT_TOLERANCES'."""
        if variant in self.tolerances:
            return dict(self.tolerances[variant])
        family = "int8" if variant.startswith("int8") else variant
        if family in self.tolerances:
            return dict(self.tolerances[family])
        return dict(DEFAULT_TOLERANCES.get(family, {}))

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
    dataset = entry.get("dataset") or DEFAULT_DATASETS.get(kind)
    task = model_task(name, kind, target, entry)
    default_shape = (1, 8, 8) if dataset == "digits" else TORCHVISION_INPUT_SHAPE
    if task == "detection":
        default_shape = DETECTION_INPUT_SHAPE
    if dataset == "random" and not entry.get("input_shape"):
        raise ValueError(
            f"model '{name}': {kind}:{target} has no dataset, so its stand-in inputs need "
            "`input_shape:` (one sample, without the batch axis, e.g. [1, 8, 8]); or set "
            "`dataset: digits` or `dataset: photos`"
        )
    input_shape = tuple(entry.get("input_shape") or default_shape)
    check_dataset_shape(name, kind, dataset, input_shape)
    default_sizes = DETECTION_CHECK_SIZES if task == "detection" else ()

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
        trusted_npz=tuple(entry.get("trusted_npz", ())),
        int8_recipes=check_recipe_variants(name, entry),
        int8dyn=dict(entry.get("int8dyn", {})),
        fp16=dict(entry.get("fp16", {})),
        exporter=str(entry.get("exporter", "torchscript")),
        external_data_threshold=int(
            entry.get("external_data_threshold", EXTERNAL_DATA_THRESHOLD_BYTES)
        ),
        dtype=str(entry.get("dtype", "float32")),
        task=task,
        sizes=tuple((int(h), int(w)) for h, w in entry.get("sizes", default_sizes)),
        benchmark=dict(entry.get("benchmark", {})),
    )


def check_dataset_shape(name: str, kind: str, dataset: str | None, shape: tuple) -> None:
    """Refuse an `input_shape` the dataset's samples cannot have (they would not follow it).

    digits images are [1, 8, 8] (a Model Zoo model's are reshaped to its input, so any shape
    of 64 values goes there); photos have 3 channels and take the height and width given.

    Raises:
        ValueError: Naming the shape, the dataset's and the cure.
    """
    if dataset == "digits" and kind != "onnx" and shape != (1, 8, 8):
        raise ValueError(
            f"model '{name}': digits samples are [1, 8, 8] images, not {list(shape)}; remove "
            "`input_shape:` (reshape inside the model, e.g. x.flatten(1)) or use another dataset"
        )
    if dataset == "photos" and (len(shape) != 3 or shape[0] != 3):
        raise ValueError(
            f"model '{name}': photos samples are [3, H, W] colour crops, not {list(shape)}; "
            "set `input_shape: [3, H, W]` or use another dataset"
        )


def is_detection_model(target: str) -> bool:
    """True when `target` names one of torchvision's detection models."""
    return re.fullmatch(DETECTION_MODEL_PATTERN, target) is not None


def model_task(name: str, kind: str, target: str, entry: dict[str, Any]) -> str:
    """`detection` for a torchvision detection model, `embedding` for an `hf:` model, else
    `classification`.

    Raises:
        ValueError: When `sizes:` (image sizes of detection parity) is set on another model,
            int8dyn_block on a model that is not `hf:`, or a detector lists variants other
            than fp32.
    """
    task = "detection" if kind == "torchvision" and is_detection_model(target) else "classification"
    if kind == "hf":
        task = "embedding"
        if entry.get("dataset", "sentences") != "sentences":
            raise ValueError(
                f"model '{name}': an hf: sentence encoder reads the shipped sentences; "
                f"remove `dataset: {entry['dataset']}` or set `dataset: sentences`"
            )
    if task != "embedding" and BLOCK_INT8_VARIANT in entry.get("variants", ()):
        raise ValueError(
            f"model '{name}': variant {BLOCK_INT8_VARIANT} is built for hf: models only; "
            "use int8dyn for dynamic int8 on this model"
        )
    if task != "detection" and "sizes" in entry:
        raise ValueError(
            f"model '{name}': `sizes:` are image sizes for detection parity, and "
            f"{kind}:{target} is not a torchvision detection model; remove them"
        )
    others = [v for v in entry.get("variants", ONNX_VARIANTS) if v != "fp32"]
    if task == "detection" and others:
        # The fp16 and int8 stages feed their check and calibration samples along a batch axis.
        raise ValueError(
            f"model '{name}': a detector is exported for one image [3, H, W] without a batch "
            f"axis, and variants {', '.join(others)} need one; set `variants: [fp32]`"
        )
    return task


def check_recipe_variants(name: str, entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The model's `int8_recipes`, after checking that every int8_<recipe> variant it lists
    has one.

    Raises:
        ValueError: Naming the variant and the `int8_recipes` key to add.
    """
    recipes = {key: dict(value or {}) for key, value in entry.get("int8_recipes", {}).items()}
    for variant in entry.get("variants", ()):
        if re.fullmatch(INT8_RECIPE_VARIANT, variant) and variant not in recipes:
            raise ValueError(
                f"model '{name}': variant '{variant}' is listed but `int8_recipes` has no "
                f"'{variant}' key; add e.g. `int8_recipes: {{{variant}: {{method: percentile}}}}`"
            )
    return recipes
