"""Build PyTorch models from a source spec and give them real or meaningful weights.

`builtin:<name>` models are trained here on their dataset. `torchvision:<name>` models take
weights from a local state-dict file, from torchvision's cache (by weights name, never
downloaded), or, when none is configured, seeded weights whose BatchNorm statistics are
re-estimated on real photos so that their outputs are far from zero.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onnxstudy.builtin import BUILTIN_MODELS
from onnxstudy.config import ModelSpec
from onnxstudy.data import Samples
from onnxstudy.errors import StudyError

log = logging.getLogger(__name__)


def build_model(spec: ModelSpec) -> nn.Module:
    """Return the architecture of `spec` with freshly seeded parameters, in eval mode."""
    torch.manual_seed(spec.seed)
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
    model = build_model(spec)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.eval()


def prepare_weights(spec: ModelSpec, samples: Samples, out_path: str | Path) -> dict:
    """Produce the weights every later stage uses and write them atomically to `out_path`.

    Returns:
        A record of how the weights were obtained: `origin` is one of `trained`, `file`,
        `torchvision-cache` or `seeded-bn-reestimated`, with figures such as train accuracy.
    """
    model = build_model(spec)
    started = time.perf_counter()
    if spec.kind == "builtin":
        record = train_classifier(model, samples, spec)
    elif spec.weights:
        record = load_configured_weights(model, spec)
    else:
        record = reestimate_batchnorm(model, samples.train_x)
        record["origin"] = "seeded-bn-reestimated"
    record["seconds"] = round(time.perf_counter() - started, 2)

    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".partial")
    torch.save(model.eval().state_dict(), tmp)
    tmp.replace(out_path)
    return record


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
