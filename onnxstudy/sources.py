"""Build models from a source spec: PyTorch models with real or meaningful weights, and
Model Zoo models taken as they are.

`builtin:<name>` models are trained here on their dataset. `torchvision:<name>` models take
weights from a local state-dict file, from torchvision's cache (by weights name, never
downloaded), or, when none is configured, seeded weights whose BatchNorm statistics are
re-estimated on real photos so that their outputs are far from zero. `onnx:<dir or file>`
models have no PyTorch form: the .onnx file is the fp32 variant, and the inputs of its zoo
tests are its samples. `python:<file.py>:<callable>` models are the user's own (usermodel);
torchvision detectors get their own samples, weights and loader (detection).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from onnxstudy.builtin import BUILTIN_MODELS
from onnxstudy.config import ModelSpec
from onnxstudy.data import Samples, make_samples
from onnxstudy.detection import (
    build_detector,
    detection_samples,
    freeze_batchnorm,
    load_detector,
    prepare_detector,
)
from onnxstudy.errors import StudyError
from onnxstudy.runtime import (
    MAX_IR_VERSION,
    NOT_IMPLEMENTED,
    classify_failure,
    first_line,
    open_session,
)
from onnxstudy.text import (
    draw_text_samples,
    load_text_model,
    load_text_tokenizer,
    pretrained_record,
)
from onnxstudy.usermodel import build_user_model, check_forward, example_input, load_user_model
from onnxstudy.zoo import GraphSignature, find_zoo_model, read_tests, stack_inputs

log = logging.getLogger(__name__)


def build_model(spec: ModelSpec) -> nn.Module:
    """Return the architecture of `spec` with freshly seeded parameters, in eval mode.

    A `python:` model is the user's callable's result; a torchvision detector is wrapped to
    take one image and return (boxes, scores, labels), with frozen BatchNorm.
    """
    torch.manual_seed(spec.seed)
    if spec.kind == "python":
        return build_user_model(spec.target, spec.name, seed=spec.seed)
    if spec.task == "detection":
        detector = build_detector(spec.target, spec.seed, spec.name)
        freeze_batchnorm(detector)
        return detector.eval()
    if spec.kind == "builtin":
        if spec.target not in BUILTIN_MODELS:
            raise StudyError(
                spec.name,
                None,
                f"builtin model '{spec.target}' does not exist",
                f"use one of: {', '.join(sorted(BUILTIN_MODELS))}",
            )
        return BUILTIN_MODELS[spec.target]().eval()
    if spec.kind == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(spec.target, weights=None).eval()
        except ValueError as error:
            raise StudyError(
                spec.name,
                None,
                f"torchvision has no model '{spec.target}' ({error})",
                "use a name from torchvision.models.list_models()",
            ) from error
    raise StudyError(spec.name, None, f"source kind '{spec.kind}' has no PyTorch model", "")


def load_model(spec: ModelSpec, weights_path: str | Path) -> nn.Module:
    """Return the model of `spec` with the state dict written by `prepare_weights`."""
    if spec.task == "detection":
        return load_detector(spec.target, weights_path, spec.name)
    if spec.kind == "hf":
        return load_text_model(spec.source, spec.name, weights_path).model
    model = build_model(spec)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.eval()


def prepare_weights(spec: ModelSpec, samples: Samples, out_path: str | Path) -> dict:
    """Produce the weights every later stage uses and write them atomically to `out_path`.

    A detector's file holds torchvision's own state dict (what `weights:` takes back).
    A `python:` model is trained when it sets `train:` (on labelled samples).

    Returns:
        A record of how the weights were obtained: `origin` is one of `trained`, `file`,
        `torchvision-cache`, `seeded-bn-reestimated`, `seeded` (a `python:` model's own
        initialisation), `seeded-heads-bn-reestimated` (detectors: see
        detection.prepare_detector) or `pretrained` (an `hf:` model's own weights, see
        text.pretrained_record), with figures such as train accuracy.
    """
    started = time.perf_counter()
    if spec.kind == "hf":
        text_model = load_text_model(spec.source, spec.name)
        model, record = text_model.model, pretrained_record(text_model, spec.source)
    elif spec.task == "detection":
        detector, record = prepare_detector(spec.target, spec.seed, spec.name, spec.weights)
        model = detector.detector
    elif spec.kind == "python":
        model, record = load_user_model(spec.target, spec.name, spec.weights, seed=spec.seed)
        check_forward(model, samples.evaluation_x, spec.name)
        if spec.train:
            record.update(train_classifier(model, samples, spec))
    elif spec.kind == "builtin":
        model = build_model(spec)
        record = train_classifier(model, samples, spec)
    elif spec.weights:
        model = build_model(spec)
        record = load_configured_weights(model, spec)
    else:
        model = build_model(spec)
        record = reestimate_batchnorm(model, samples.train_x)
        record["origin"] = "seeded-bn-reestimated"
    record["seconds"] = round(time.perf_counter() - started, 2)

    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".partial")
    torch.save(model.eval().state_dict(), tmp)
    tmp.replace(out_path)
    return record


def draw_samples(spec: ModelSpec) -> Samples:
    """The training, calibration and evaluation samples of a PyTorch model (not a zoo model).

    Detectors get the sample photos whole at the export size, [N, 3, H, W] in [0, 1] (see
    detection.detection_samples); dataset `random` gives seeded stand-ins of `input_shape`
    and `dtype` without labels (usermodel.example_input); `digits` and `photos` come from
    data.make_samples, cast to `dtype`; an `hf:` model's are the shipped sentences tokenized
    (text.draw_text_samples).
    """
    if spec.task == "detection":
        return detection_samples(tuple(spec.input_shape[-2:]))
    if spec.kind == "hf":
        tokenizer = load_text_tokenizer(spec.source, spec.name)
        return draw_text_samples(tokenizer, spec.calibration_samples, spec.evaluation_samples)
    if spec.dataset == "random":
        log.warning("%s: no dataset configured; parity runs on seeded stand-in inputs", spec.name)
        return Samples(
            train_x=None,
            train_y=None,
            calibration_x=example_input(
                spec.input_shape, spec.dtype, spec.calibration_samples, spec.seed
            ),
            evaluation_x=example_input(
                spec.input_shape, spec.dtype, spec.evaluation_samples, spec.seed + 1
            ),
            evaluation_y=None,
        )
    samples = make_samples(
        spec.dataset,
        spec.input_shape,
        spec.calibration_samples,
        spec.evaluation_samples,
        spec.seed,
    )
    if spec.dtype != "float32":
        for name in ("train_x", "calibration_x", "evaluation_x"):
            setattr(samples, name, getattr(samples, name).astype(spec.dtype))
    return samples


def train_classifier(model: nn.Module, samples: Samples, spec: ModelSpec) -> dict:
    """Train `model` with Adam and cross-entropy on the training samples (seeded, CPU)."""
    if samples.train_y is None:
        raise StudyError(
            spec.name, None, "training needs labelled samples", "use the `digits` dataset"
        )
    epochs = int(spec.train.get("epochs", 10))
    batch_size = int(spec.train.get("batch_size", 32))
    generator = torch.Generator().manual_seed(spec.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(spec.train.get("lr", 1e-3)))
    x = torch.from_numpy(samples.train_x)
    y = torch.from_numpy(samples.train_y)

    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        log.info("epoch %d/%d: loss %.4f", epoch + 1, epochs, total / len(x))
    model.eval()

    with torch.inference_mode():
        train_accuracy = float((model(x).argmax(1) == y).float().mean())
    log.info("train accuracy %.4f", train_accuracy)
    return {"origin": "trained", "epochs": epochs, "train_accuracy": train_accuracy}


def load_configured_weights(model: nn.Module, spec: ModelSpec) -> dict:
    """Load a local state-dict file or a torchvision weights name found in torchvision's cache.

    Both are read with `weights_only=True`; nothing is downloaded.
    """
    path = Path(str(spec.weights)).expanduser()
    origin = "file"
    if not path.exists():
        path = torchvision_cache_file(spec)
        origin = "torchvision-cache"
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise StudyError(
            spec.name,
            None,
            f"the weights in {path} do not fit {spec.source}: {str(error).splitlines()[0]}",
            "give a state dict saved from the same architecture",
        ) from error
    log.info("loaded weights from %s", path)
    return {"origin": origin, "path": str(path)}


def torchvision_cache_file(spec: ModelSpec) -> Path:
    """Return the cached file of torchvision weights `spec.weights`, or explain how to get it."""
    import torchvision

    try:
        weights = torchvision.models.get_weight(str(spec.weights))
    except (ValueError, KeyError, AttributeError) as error:
        raise StudyError(
            spec.name,
            None,
            f"weights '{spec.weights}' are neither a file nor a torchvision weights name",
            "give the path of a state-dict file, or a name such as "
            "'MobileNet_V2_Weights.IMAGENET1K_V1'",
        ) from error
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.exists():
        raise StudyError(
            spec.name,
            None,
            f"torchvision weights {spec.weights} are not in the local cache ({cached})",
            "the study never downloads; copy the file there from a connected machine, "
            "or set `weights:` to a local state-dict file",
        )
    return cached


def reestimate_batchnorm(model: nn.Module, images: np.ndarray, batch_size: int = 16) -> dict:
    """Recompute every BatchNorm's running mean and variance on real `images`.

    Seeded torchvision models otherwise output logits near 1e-9, which makes parity trivial.
    Uses a cumulative average (momentum None) over all images, without gradients.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(torch.from_numpy(images[start : start + batch_size]))
    model.eval()
    for norm in norms:
        norm.momentum = 0.1
    log.info("re-estimated %d BatchNorm layers on %d images", len(norms), len(images))
    return {"batchnorm_layers": len(norms), "images": len(images)}


def run_torch(model: nn.Module, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run `model` on `inputs` in batches under inference mode; returns float32 outputs."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            outputs.append(model(torch.from_numpy(inputs[start : start + batch_size])).numpy())
    return np.concatenate(outputs).astype(np.float32)


def import_onnx_model(source: str | Path, out_path: str | Path, spec: ModelSpec) -> dict:
    """Take a Model Zoo model as the study's fp32 variant: save it to `out_path` (external data
    inlined) with an IR version the pinned runtime loads, once ONNX Runtime has loaded it.

    Returns:
        The record: source, IR version found and saved, opsets, node count, op types, graph
        inputs and outputs, size in bytes and seconds.

    Raises:
        StudyError: When onnx cannot read the file or ONNX Runtime cannot load it.
    """
    started = time.perf_counter()
    out_path = Path(out_path)
    try:
        proto = onnx.load(str(source))
    except Exception as error:
        raise StudyError(
            spec.name,
            "fp32",
            f"onnx cannot read {source}: {first_line(error)}",
            "check that it is a whole .onnx file (a Git LFS pointer is not)",
        ) from error
    found_ir = proto.ir_version
    if found_ir > MAX_IR_VERSION:
        log.warning(
            "IR version %d saved as %d, the newest the pinned runtime loads",
            found_ir,
            MAX_IR_VERSION,
        )
        proto.ir_version = MAX_IR_VERSION

    tmp = out_path.with_name(out_path.name + ".partial")
    onnx.save(proto, str(tmp))
    try:
        open_session(tmp, "cpu")
    except Exception as error:
        tmp.unlink(missing_ok=True)
        kind = classify_failure(error, "load")
        cure = (
            "the pinned onnxruntime has no kernel for an operator or type of this model; "
            "replace it, or remove the model from config.yaml"
            if kind == NOT_IMPLEMENTED
            else "the pinned onnxruntime loads opsets up to 26; convert the model with "
            "onnx.version_converter, or remove it from config.yaml"
        )
        raise StudyError(
            spec.name, "fp32", f"ONNX Runtime cannot load {source}: {first_line(error)}", cure
        ) from error
    tmp.replace(out_path)

    signature = GraphSignature.of(proto)
    record = {
        "source": str(source),
        "ir_version_found": found_ir,
        "ir_version": proto.ir_version,
        "opsets": {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import},
        "nodes": len(proto.graph.node),
        "op_types": dict(sorted(Counter(node.op_type for node in proto.graph.node).items())),
        "inputs": signature.input_names,
        "outputs": signature.output_names,
        "size_bytes": out_path.stat().st_size,
        "seconds": round(time.perf_counter() - started, 3),
    }
    log.info("imported %s: %d nodes, %.1f KB", source, record["nodes"], record["size_bytes"] / 1024)
    return record


def zoo_samples(source: str | Path, spec: ModelSpec) -> Samples:
    """The samples of a Model Zoo model, one array per graph input.

    Evaluation (timing) takes every test's inputs stacked along axis 0; calibration takes the
    first `spec.calibration_samples` rows of them, or, when `spec.dataset` is configured,
    samples of that dataset reshaped to the model's single input.

    Raises:
        StudyError: When the test data is broken or cannot be stacked, or a dataset is
            configured for a model it cannot feed.
    """
    zoo = find_zoo_model(source)
    signature = GraphSignature.of(zoo.model)
    try:
        evaluation = stack_inputs(read_tests(zoo, signature, spec.trusted_npz))
    except ValueError as error:
        raise StudyError(
            spec.name, None, str(error), "fix or remove the file named, or configure a `dataset:`"
        ) from error
    calibration = {name: array[: spec.calibration_samples] for name, array in evaluation.items()}
    if spec.dataset:
        calibration = dataset_calibration(spec, signature)
    rows = {name: len(array) for name, array in calibration.items()}
    log.info(
        "zoo samples: %d evaluation rows; calibration rows %s",
        len(next(iter(evaluation.values()))),
        rows,
    )
    return Samples(None, None, calibration, evaluation, None)


def dataset_calibration(spec: ModelSpec, signature: GraphSignature) -> dict[str, np.ndarray]:
    """Calibration samples of `spec.dataset` for a model's only input, reshaped to its fixed
    per-sample shape (e.g. 8x8 digits to 64 values) and cast to its dtype."""
    if len(signature.inputs) != 1:
        raise StudyError(
            spec.name,
            "int8",
            f"a dataset feeds one input, and the model has {len(signature.inputs)}",
            "remove `dataset:` to calibrate on the zoo tests' inputs",
        )
    info = signature.inputs[0]
    drawn = make_samples(
        spec.dataset, spec.input_shape, spec.calibration_samples, spec.evaluation_samples, spec.seed
    ).calibration_x
    dims = info.type.tensor_type.shape.dim[1:]
    shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
    if None in shape or int(np.prod(shape)) != int(np.prod(drawn.shape[1:])):
        raise StudyError(
            spec.name,
            "int8",
            f"{spec.dataset} samples of shape {drawn.shape[1:]} do not fit input "
            f"'{info.name}' with per-sample dims {shape}",
            "remove `dataset:` to calibrate on the zoo tests' inputs",
        )
    dtype = onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
    return {info.name: drawn.reshape(len(drawn), *shape).astype(dtype)}
