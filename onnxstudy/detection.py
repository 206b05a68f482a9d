"""Torchvision detectors: meaningful seeded weights, export at any image size, box parity.

A detector takes one image `[3, H, W]` with values in [0, 1] and returns boxes `[N, 4]`
(x1, y1, x2, y2 in pixels of that image), scores `[N]` and labels `[N]` (int64); masks and
keypoints of Mask and Keypoint R-CNN are not exported. The ONNX file has dynamic height and
width, so parity is checked at the export size and at other sizes: the graph resizes the
image itself, and a size the example never showed can take another path. Right after export,
the file is also checked on other images at the export size (`export_and_verify_detector`).

Untrained detection heads score every box alike, and tied scores make two correct runtimes
keep different boxes; seeded weights therefore redraw the heads' last layers with a wide
spread and re-estimate the backbone's BatchNorm statistics on real photos.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onnxstudy.config import DETECTION_CHECK_SIZES, DETECTION_INPUT_SHAPE, ModelSpec
from onnxstudy.data import Samples
from onnxstudy.errors import StudyError
from onnxstudy.export import ExportOptions, data_dependence_record, export_model
from onnxstudy.onnxfile import EXTERNAL_DATA_THRESHOLD_BYTES
from onnxstudy.runtime import open_session
from onnxstudy.usermodel import check_state_fits
from onnxstudy.zoo import write_test_data_set

log = logging.getLogger(__name__)

IMAGE_INPUT = "image"
DETECTION_OUTPUTS = ("boxes", "scores", "labels")
# Height, width of the export example; 320 is the short side the *_320_fpn models work at.
EXPORT_SIZE = tuple(DETECTION_INPUT_SHAPE[1:])
# Other sizes parity runs at: non-square, no side a multiple of 32, smaller and larger.
CHECK_SIZES = DETECTION_CHECK_SIZES
IOU_THRESHOLD = 0.99
# Scores are probabilities; resizing in ONNX Runtime moves them by up to ~0.004 at other sizes.
SCORE_ATOL = 0.01
# Standard deviations of the redrawn head layers: wide enough that scores and boxes spread.
CLASSIFICATION_STD = 0.5
REGRESSION_STD = 0.1
_CLASSIFICATION_LAYERS = ("cls_logits", "cls_score", "classification_head")
_REGRESSION_LAYERS = ("bbox_pred", "bbox_reg", "bbox_ctrness", "regression_head")
# Sizes of the photos the BatchNorm statistics are re-estimated on (height, width).
_STATISTICS_SIZES = ((240, 320), (320, 480), (427, 640))
# The counts of `match_detections` that are summed over images.
_CASE_COUNTS = (
    "reference_boxes",
    "candidate_boxes",
    "matched",
    "unmatched_reference",
    "unmatched_candidate",
    "unmatched_at_cutoff",
    "label_mismatches",
)


class SingleImageDetector(nn.Module):
    """A torchvision detector called on one image, returning (boxes, scores, labels).

    Attributes:
        detector: The torchvision model; its state dict is the one saved and loaded.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self.detector([image])[0]
        return found["boxes"], found["scores"], found["labels"]


def detector_names() -> list[str]:
    """Names of torchvision's detection models (fasterrcnn_*, retinanet_*, fcos_*, ssd*...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models.detection))


def is_detector(name: str) -> bool:
    """True when `name` is a torchvision detection model."""
    return name in detector_names()


def build_detector(name: str, seed: int, model_name: str) -> SingleImageDetector:
    """Torchvision detector `name` with torchvision's seeded initialisation, in eval mode.

    Without pretrained weights torchvision builds the backbone with trainable BatchNorm;
    `freeze_batchnorm` turns it into the FrozenBatchNorm2d of its pretrained checkpoints.

    Raises:
        StudyError: When torchvision has no detector of that name.
    """
    import torchvision

    if not is_detector(name):
        raise StudyError(
            model_name,
            None,
            f"torchvision has no detection model '{name}'",
            f"use one of: {', '.join(detector_names())}",
        )
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    return SingleImageDetector(model).eval()


def freeze_batchnorm(module: nn.Module) -> int:
    """Replace every BatchNorm2d below `module` by a FrozenBatchNorm2d with its statistics.

    Returns:
        The number of layers replaced.
    """
    from torchvision.ops.misc import FrozenBatchNorm2d

    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
            replaced += 1
        else:
            replaced += freeze_batchnorm(child)
    return replaced


def seed_detection_heads(model: SingleImageDetector, seed: int) -> list[str]:
    """Redraw the heads' classification and box-regression layers from a wide normal.

    Classification layers get std 0.5 and regression layers std 0.1, biases 0, drawn from a
    generator seeded with `seed`; torchvision's own init (std 0.01) ties every score.

    Returns:
        Names of the layers redrawn.
    """
    generator = torch.Generator().manual_seed(seed)
    redrawn = []
    with torch.no_grad():
        for name, layer in model.detector.named_modules():
            if not isinstance(layer, nn.Conv2d | nn.Linear) or name.startswith("backbone"):
                continue
            if any(key in name for key in _CLASSIFICATION_LAYERS):
                std = CLASSIFICATION_STD
            elif any(key in name for key in _REGRESSION_LAYERS):
                std = REGRESSION_STD
            else:
                continue
            layer.weight.normal_(0.0, std, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
            redrawn.append(name)
    return redrawn


def reestimate_backbone_batchnorm(model: SingleImageDetector, images: Sequence[np.ndarray]) -> int:
    """Recompute the backbone's BatchNorm statistics on `images`, one image at a time.

    Each image goes through the detector's own transform (normalise, resize), then the
    backbone in train mode with a cumulative average (momentum None), without gradients.

    Returns:
        The number of BatchNorm layers re-estimated.
    """
    detector = model.detector
    norms = [m for m in detector.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    detector.backbone.train()
    with torch.no_grad():
        for image in images:
            batch, _ = detector.transform([torch.from_numpy(image)])
            detector.backbone(batch.tensors)
    model.eval()
    for norm in norms:
        norm.momentum = 0.1
    return len(norms)


def prepare_detector(
    name: str,
    seed: int,
    model_name: str,
    weights: str | Path | None = None,
) -> tuple[SingleImageDetector, dict]:
    """The detector every stage uses, with configured or seeded non-degenerate weights.

    With `weights`, a state-dict file (read with `weights_only=True`) is loaded into the
    FrozenBatchNorm architecture, as torchvision's pretrained checkpoints expect. Without,
    the heads are redrawn (`seed_detection_heads`), the backbone's BatchNorm statistics are
    re-estimated on scikit-learn's sample photos, and BatchNorm is then frozen.

    Returns:
        (detector in eval mode, record) where the record says `origin` (`file` or
        `seeded-heads-bn-reestimated`) with the figures of a probe run at EXPORT_SIZE:
        probe_detections and probe_score_min / probe_score_max.

    Raises:
        StudyError: For an unknown detector, a missing weights file or one that does not fit.
    """
    started = time.perf_counter()
    model = build_detector(name, seed, model_name)
    if weights is not None:
        freeze_batchnorm(model)
        record = {"origin": "file", "path": str(weights)}
        load_detector_state(model, weights, model_name)
    else:
        redrawn = seed_detection_heads(model, seed)
        images = [photo for size in _STATISTICS_SIZES for photo in photo_images(size)]
        norms = reestimate_backbone_batchnorm(model, images)
        freeze_batchnorm(model)
        record = {
            "origin": "seeded-heads-bn-reestimated",
            "redrawn_layers": redrawn,
            "batchnorm_layers": norms,
            "statistics_images": len(images),
        }

    with torch.inference_mode():
        _, scores, _ = model(torch.from_numpy(photo_images(EXPORT_SIZE)[0]))
    record["probe_detections"] = len(scores)
    record["probe_score_min"] = float(scores.min()) if len(scores) else None
    record["probe_score_max"] = float(scores.max()) if len(scores) else None
    record["seconds"] = round(time.perf_counter() - started, 2)
    if len(scores) == 0 or float(scores.max() - scores.min()) < SCORE_ATOL:
        log.warning(
            "%s: the probe photo gives no spread of scores; parity means little", model_name
        )
    log.info(
        "%s: %s weights, %d detections on the probe photo",
        model_name,
        record["origin"],
        len(scores),
    )
    return model.eval(), record


def load_detector_state(model: SingleImageDetector, path: str | Path, model_name: str) -> None:
    """Load a state dict of the torchvision model (not the wrapper) with weights_only=True.

    Raises:
        StudyError: When the file is missing or its tensors do not fit the architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(model_name, None, f"weights file {path} does not exist", "fix `weights:`")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise StudyError(
            model_name,
            None,
            f"{path} holds a {type(state).__name__}, not a state dict",
            "save the weights with torch.save(model.state_dict(), path)",
        )
    # FrozenBatchNorm2d has no step counter; torchvision drops it from BatchNorm checkpoints.
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    check_state_fits(model.detector, state, path, model_name)
    model.detector.load_state_dict(state)


def load_detector(name: str, weights_path: str | Path, model_name: str) -> SingleImageDetector:
    """The detector with a state dict written from `prepare_detector(...)[0].detector`."""
    model = build_detector(name, 0, model_name)
    freeze_batchnorm(model)
    load_detector_state(model, weights_path, model_name)
    return model.eval()


def photo_images(size: tuple[int, int]) -> list[np.ndarray]:
    """scikit-learn's two sample photos resized to (height, width), as [3, H, W] in [0, 1].

    The whole photo is resized bilinearly (aspect ratio not kept), float32.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    height, width = size
    images = []
    for photo in load_sample_images().images:
        resized = Image.fromarray(photo).resize((width, height), Image.BILINEAR)
        array = np.asarray(resized, dtype=np.float32) / 255.0
        images.append(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return images


def export_detector(
    model: SingleImageDetector,
    out_path: str | Path,
    model_name: str,
    export_size: tuple[int, int] = EXPORT_SIZE,
    opset: int = 17,
    exporter: str = "torchscript",
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD_BYTES,
) -> dict:
    """Export on a photo of `export_size` with dynamic height and width (no batch axis).

    The TorchScript exporter at opset 17 is the combination known to work for torchvision's
    detectors; the dynamo exporter fails on their batched NMS (a data-dependent guard).

    Returns:
        The record of `export_model` plus export_size [height, width].
    """
    options = ExportOptions(
        exporter=exporter,
        opset=opset,
        input_names=(IMAGE_INPUT,),
        output_names=DETECTION_OUTPUTS,
        dynamic_axes={
            IMAGE_INPUT: {1: "height", 2: "width"},
            **{name: {0: "detections"} for name in DETECTION_OUTPUTS},
        },
        external_data_threshold=external_data_threshold,
    )
    example = photo_images(export_size)[0]
    record = export_model(model, [example], out_path, options, model_name)
    record["export_size"] = list(export_size)
    return record


def detection_samples(export_size: tuple[int, int] = EXPORT_SIZE) -> Samples:
    """A detector's samples: both sample photos at `export_size`, [2, 3, H, W] in [0, 1].

    They are calibration and evaluation samples alike (there are no others); there is no
    training set and no labels. The detector's benchmark times the first photo.
    """
    images = np.stack(photo_images(export_size))
    return Samples(None, None, images, images, None)


def image_variations(images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Images at the export size unlike the export example (the first photo), by description.

    All stay in [0, 1], the range a detector's input is defined on: the other photo, the
    example darker (x0.5, values in [0, 0.5]), inverted (1 - x) and mirrored left to right.
    """
    example, *others = images
    variations = {f"photo {index + 2}": image for index, image in enumerate(others)}
    variations.update(
        {
            "darker x0.5": example * 0.5,
            "inverted 1-x": 1.0 - example,
            "mirrored": example[:, :, ::-1],
        }
    )
    return {
        name: np.ascontiguousarray(image, dtype=np.float32) for name, image in variations.items()
    }


def check_detector_data_dependence(
    model: SingleImageDetector,
    onnx_path: str | Path,
    export_size: tuple[int, int] = EXPORT_SIZE,
    iou_threshold: float = IOU_THRESHOLD,
    score_atol: float = SCORE_ATOL,
) -> dict:
    """Compare the exported detector with PyTorch on images unlike the export example.

    The detector counterpart of export.check_data_dependence: a detector has no batch axis,
    and its other sizes are checked by `compare_detections`, so the cases here are the
    `image_variations` at the export size, each judged like a size of `compare_detections`.

    Returns:
        {"verdict": "diverges" | "consistent", "diverging_inputs": [descriptions],
        "method": str, "cases": [{"inputs", "variation", "reference_boxes", "matched",
        "unmatched_reference", "unmatched_candidate", "unmatched_at_cutoff", "verdict",
        "reason"}]}
    """
    session = open_session(onnx_path, "cpu")
    cases = []
    for name, image in image_variations(photo_images(export_size)).items():
        with torch.inference_mode():
            reference = [t.numpy() for t in model(torch.from_numpy(image))]
        match = match_detections(
            reference, session.run({IMAGE_INPUT: image}), iou_threshold, score_atol
        )
        judged = _size_verdict(export_size, export_size, [match], score_atol)
        cases.append(
            {
                "inputs": f"{name}, {export_size[0]}x{export_size[1]}",
                "variation": name,
                **{key: match[key] for key in _CASE_COUNTS},
                "verdict": "consistent" if judged["verdict"] == "pass" else "diverges",
                "reason": "; ".join(judged["failures"]),
            }
        )
    return data_dependence_record(
        cases,
        method=f"detections matched by IoU >= {iou_threshold:g}, scores within {score_atol:g}",
    )


def export_and_verify_detector(
    model: SingleImageDetector, spec: ModelSpec, out_path: str | Path, test_data_dir: str | Path
) -> dict:
    """Export a detector as `spec` says, check it on other images, write its test data set.

    The export size is `spec.input_shape`'s height and width; exporter, opset and external
    data threshold are the spec's. `test_data_dir` gets the example image and PyTorch's
    boxes, scores and labels on it, in the Model Zoo layout.

    Returns:
        The record of `export_detector` plus data_dependence
        (`check_detector_data_dependence`).

    Raises:
        StudyError: When the export fails (see export.export_model).
    """
    export_size = (int(spec.input_shape[-2]), int(spec.input_shape[-1]))
    record = export_detector(
        model,
        out_path,
        spec.name,
        export_size,
        spec.opset,
        spec.exporter,
        spec.external_data_threshold,
    )
    record["data_dependence"] = check_detector_data_dependence(model, out_path, export_size)
    example = photo_images(export_size)[0]
    with torch.inference_mode():
        outputs = [t.numpy() for t in model(torch.from_numpy(example))]
    write_test_data_set(
        test_data_dir, {IMAGE_INPUT: example}, dict(zip(DETECTION_OUTPUTS, outputs, strict=True))
    )
    log.info(
        "%s: export check on other images: %s", spec.name, record["data_dependence"]["verdict"]
    )
    return record


def detection_accuracy(images: int) -> dict:
    """The accuracy record of a detector: none, for want of annotated images."""
    return {
        "metric": "detection",
        "accuracy": None,
        "samples": images,
        "reason": "no annotated images: detection accuracy (mAP) needs labelled boxes",
    }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of `a` [N, 4] with every box of `b` [M, 4]."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_detections(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    iou_threshold: float = IOU_THRESHOLD,
    score_atol: float = SCORE_ATOL,
) -> dict:
    """Pair the candidate's boxes with the reference's, in any order, by IoU.

    Pairs need IoU >= `iou_threshold`; among them, same-label pairs are taken first, then
    closer scores, then higher IoU, each box at most once (greedy, deterministic).

    A detector keeps the best boxes down to a score threshold or a count cap; a box scored
    at that cut-off can fall on either side of it in two runtimes. Unmatched boxes whose
    score is within `score_atol` of the lowest score kept by either side are therefore
    counted apart, as `unmatched_at_cutoff`.

    Args:
        reference: (boxes [N, 4], scores [N], labels [N]) of the reference (PyTorch).
        candidate: The same of the variant (ONNX Runtime).
        iou_threshold: Smallest IoU of a match. Defaults to 0.99.
        score_atol: Score distance to the cut-off of an excused unmatched box. Defaults
            to 0.01.

    Returns:
        reference_boxes, candidate_boxes, matched, unmatched_reference, unmatched_candidate,
        unmatched_at_cutoff (of those, both sides), label_mismatches (matched pairs whose
        labels differ), max_score_abs_err and min_matched_iou (None when nothing matched).
    """
    ref_boxes, ref_scores, ref_labels = (np.asarray(x) for x in reference)
    boxes, scores, labels = (np.asarray(x) for x in candidate)
    iou = box_iou(ref_boxes.reshape(-1, 4), boxes.reshape(-1, 4))
    rows, cols = np.nonzero(iou >= iou_threshold)
    keys = sorted(
        zip(rows, cols, strict=True),
        key=lambda p: (
            ref_labels[p[0]] != labels[p[1]],
            abs(float(ref_scores[p[0]]) - float(scores[p[1]])),
            -iou[p],
        ),
    )
    used_ref: set[int] = set()
    used_cand: set[int] = set()
    pairs = []
    for row, col in keys:
        if row not in used_ref and col not in used_cand:
            used_ref.add(row)
            used_cand.add(col)
            pairs.append((row, col))

    score_errs = [abs(float(ref_scores[r]) - float(scores[c])) for r, c in pairs]
    cutoff = min(ref_scores.min(initial=np.inf), scores.min(initial=np.inf))
    lone = [ref_scores[i] for i in range(len(ref_boxes)) if i not in used_ref]
    lone += [scores[i] for i in range(len(boxes)) if i not in used_cand]
    return {
        "reference_boxes": len(ref_boxes),
        "candidate_boxes": len(boxes),
        "matched": len(pairs),
        "unmatched_reference": len(ref_boxes) - len(pairs),
        "unmatched_candidate": len(boxes) - len(pairs),
        "unmatched_at_cutoff": sum(int(score <= cutoff + score_atol) for score in lone),
        "label_mismatches": sum(int(ref_labels[r] != labels[c]) for r, c in pairs),
        "max_score_abs_err": max(score_errs, default=0.0),
        "min_matched_iou": float(min(iou[r, c] for r, c in pairs)) if pairs else None,
    }


def compare_detections(
    model: SingleImageDetector,
    onnx_path: str | Path,
    export_size: tuple[int, int] = EXPORT_SIZE,
    sizes: Sequence[tuple[int, int]] = CHECK_SIZES,
    iou_threshold: float = IOU_THRESHOLD,
    score_atol: float = SCORE_ATOL,
    provider: str = "cpu",
) -> dict:
    """Detection parity of an exported detector against PyTorch, one verdict per image size.

    At the export size and at each of `sizes`, both scikit-learn sample photos are resized
    to that size and run through PyTorch and ONNX Runtime; their detections are matched with
    `match_detections`. A size passes when every box is matched both ways (boxes at the score
    cut-off excepted), no matched pair differs in label, and no matched score differs by more
    than `score_atol`.

    Returns:
        A JSON-able dict: kind `detection`, iou_threshold, score_atol, export_size, verdict
        (`pass` when every size passes), failures (`<H>x<W>: <sentence>` of every failing
        size) and sizes: one entry per size with height, width,
        role (`export` or `other`), images, the summed counts of `match_detections`, the
        worst score error and IoU, verdict and failures (sentences).
    """
    session = open_session(onnx_path, provider)
    results = []
    for size in [tuple(export_size), *(tuple(s) for s in sizes)]:
        per_image = []
        for image in photo_images(size):
            with torch.inference_mode():
                reference = [t.numpy() for t in model(torch.from_numpy(image))]
            candidate = session.run({IMAGE_INPUT: image})
            per_image.append(match_detections(reference, candidate, iou_threshold, score_atol))
        results.append(_size_verdict(size, export_size, per_image, score_atol))

    failing = [f"{r['height']}x{r['width']}" for r in results if r["verdict"] != "pass"]
    if failing:
        log.warning("detections differ from PyTorch at %s", ", ".join(failing))
    return {
        "kind": "detection",
        "iou_threshold": iou_threshold,
        "score_atol": score_atol,
        "export_size": list(export_size),
        "verdict": "fail" if failing else "pass",
        "failures": [
            f"{r['height']}x{r['width']}: {failure}" for r in results for failure in r["failures"]
        ],
        "sizes": results,
    }


def _size_verdict(
    size: tuple[int, int], export_size: tuple[int, int], per_image: list[dict], score_atol: float
) -> dict:
    summed = {key: sum(image[key] for image in per_image) for key in _CASE_COUNTS}
    ious = [image["min_matched_iou"] for image in per_image if image["min_matched_iou"] is not None]
    worst_score = max(image["max_score_abs_err"] for image in per_image)
    failures = []
    unmatched = summed["unmatched_reference"] + summed["unmatched_candidate"]
    if unmatched > summed["unmatched_at_cutoff"]:
        failures.append(
            f"{summed['unmatched_reference']} PyTorch and {summed['unmatched_candidate']} "
            f"ONNX boxes have no match ({summed['unmatched_at_cutoff']} of them at the "
            "score cut-off)"
        )
    if summed["label_mismatches"]:
        failures.append(f"{summed['label_mismatches']} matched boxes differ in label")
    if worst_score > score_atol:
        failures.append(f"max score error {worst_score:.3g} exceeds {score_atol:g}")
    return {
        "height": int(size[0]),
        "width": int(size[1]),
        "role": "export" if tuple(size) == tuple(export_size) else "other",
        "images": len(per_image),
        **summed,
        "max_score_abs_err": worst_score,
        "min_matched_iou": min(ious) if ious else None,
        "verdict": "fail" if failures else "pass",
        "failures": failures,
    }
