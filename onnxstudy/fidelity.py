"""How closely a variant computes what the reference computed: parity and accuracy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

TOLERANCE_KEYS = ("atol", "rtol", "min_cosine", "min_top1_agreement")
# Samples the slow reference evaluator runs to check fp16 with true fp16 arithmetic.
TRUE_FP16_SAMPLES = 2


@dataclass
class ParityResult:
    """Fidelity of a variant's outputs against reference outputs.

    Attributes:
        max_abs_err: Largest |variant - reference| over all elements.
        max_rel_err: max_abs_err divided by the largest |reference| (scale-free, robust to
            reference elements near zero).
        cosine_min: Smallest cosine similarity between a sample's output and its reference.
        top1_agreement: Share of samples whose argmax matches the reference's.
        samples: Number of samples compared.
        verdict: `pass` when every configured criterion holds, else `fail`.
        failures: The criteria that did not hold, as sentences.
        tolerance: The criteria applied.
    """

    max_abs_err: float
    max_rel_err: float
    cosine_min: float
    top1_agreement: float
    samples: int
    verdict: str
    failures: list[str] = field(default_factory=list)
    tolerance: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def cosine_per_sample(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample's flattened output with its reference (1.0 if both 0)."""
    a = outputs.reshape(len(outputs), -1).astype(np.float64)
    b = reference.reshape(len(reference), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)


def compare_outputs(
    outputs: np.ndarray, reference: np.ndarray, tolerance: dict[str, float]
) -> ParityResult:
    """Compare `outputs` with `reference` (same shape, batch first) under `tolerance`.

    Args:
        outputs: The variant's outputs.
        reference: The reference outputs (PyTorch or Model Zoo).
        tolerance: Any of `atol` and `rtol` (element-wise, |a-b| <= atol + rtol*|ref|),
            `min_cosine` and `min_top1_agreement`. No criterion means the verdict is `pass`.

    Raises:
        ValueError: When the shapes differ.
    """
    if outputs.shape != reference.shape:
        raise ValueError(f"output shape {outputs.shape} differs from reference {reference.shape}")
    outputs = outputs.astype(np.float64)
    reference = reference.astype(np.float64)
    diff = np.abs(outputs - reference)
    finite = bool(np.isfinite(outputs).all())
    max_abs = float(diff.max()) if finite else float("inf")
    scale = float(np.abs(reference).max()) or 1.0
    cosine = float(cosine_per_sample(outputs, reference).min()) if finite else float("nan")
    flat_out = outputs.reshape(len(outputs), -1)
    flat_ref = reference.reshape(len(reference), -1)
    top1 = float((flat_out.argmax(1) == flat_ref.argmax(1)).mean())

    failures = []
    if not finite:
        failures.append("outputs contain inf or NaN")
    if "atol" in tolerance or "rtol" in tolerance:
        atol = float(tolerance.get("atol", 0.0))
        rtol = float(tolerance.get("rtol", 0.0))
        bound = atol + rtol * np.abs(reference)
        worst = float((diff - bound).max())
        if not finite or worst > 0:
            failures.append(f"max abs error {max_abs:.3g} exceeds atol {atol:g} + rtol {rtol:g}")
    if "min_cosine" in tolerance and not cosine >= float(tolerance["min_cosine"]):
        failures.append(f"min cosine {cosine:.5f} below {tolerance['min_cosine']}")
    if "min_top1_agreement" in tolerance and top1 < float(tolerance["min_top1_agreement"]):
        failures.append(f"top-1 agreement {top1:.3f} below {tolerance['min_top1_agreement']}")

    return ParityResult(
        max_abs_err=max_abs,
        max_rel_err=max_abs / scale,
        cosine_min=cosine,
        top1_agreement=top1,
        samples=len(outputs),
        verdict="fail" if failures else "pass",
        failures=failures,
        tolerance={k: float(v) for k, v in tolerance.items() if k in TOLERANCE_KEYS},
    )


def top1_accuracy(logits: np.ndarray, labels: np.ndarray | None) -> dict:
    """Top-1 accuracy of `logits` against `labels`; without labels, accuracy is None.

    Returns:
        {"metric": "top1", "accuracy": float | None, "samples": int, "reason": str}
    """
    if labels is None:
        return {
            "metric": "top1",
            "accuracy": None,
            "samples": len(logits),
            "reason": "no labelled evaluation data: accuracy needs trained weights and labels",
        }
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    return {"metric": "top1", "accuracy": accuracy, "samples": len(labels), "reason": ""}


def reference_evaluator_outputs(
    model: str | Path | onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> list[np.ndarray]:
    """Every output of `model` computed by onnx's reference evaluator (NumPy kernels).

    Unlike ONNX Runtime's CPU provider, which computes most fp16 operators in fp32 through
    casts it inserts, the reference evaluator computes fp16 tensors in fp16, so overflow
    shows as it would on a GPU. It is slow (about 2 s per 224x224 image for MobileNetV2):
    give it a few samples.

    Raises:
        Exception: Whatever the evaluator raises for an operator it does not implement
            (e.g. com.microsoft contrib operators).
    """
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    with np.errstate(over="ignore", invalid="ignore"):
        return [np.asarray(out) for out in ReferenceEvaluator(proto).run(None, feeds)]


def true_fp16_parity(
    model: str | Path | onnx.ModelProto,
    inputs: np.ndarray | dict[str, np.ndarray],
    reference: np.ndarray,
    tolerance: dict[str, float],
    samples: int | None = None,
) -> dict:
    """Parity of an fp16 model's first output with true fp16 arithmetic, on the first
    `samples` inputs (onnx's reference evaluator; see reference_evaluator_outputs).

    Args:
        model: The fp16 model.
        inputs: One array (the graph's first input) or a dict of input name to array.
        reference: Reference outputs for `inputs` (at least `samples` of them).
        tolerance: The parity criteria of compare_outputs.
        samples: How many samples to run; None means TRUE_FP16_SAMPLES (2).

    Returns:
        {"method": "onnx-reference-evaluator", "samples", "max_abs_err", "cosine_min",
        "verdict", "failures"}, or {"method": ..., "error": why} when the evaluator cannot
        run the graph (the verdict is then left to the other figures).
    """
    samples = TRUE_FP16_SAMPLES if samples is None else samples
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    if not isinstance(inputs, dict):
        initializers = {init.name for init in proto.graph.initializer}
        first = next(i.name for i in proto.graph.input if i.name not in initializers)
        inputs = {first: inputs}
    feeds = {name: np.ascontiguousarray(array[:samples]) for name, array in inputs.items()}
    record: dict = {"method": "onnx-reference-evaluator", "samples": min(samples, len(reference))}
    try:
        outputs = reference_evaluator_outputs(proto, feeds)
    except Exception as error:  # an operator the evaluator lacks: report it, decide nothing
        record["error"] = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return record
    result = compare_outputs(outputs[0].astype(np.float32), reference[:samples], tolerance)
    record.update(
        max_abs_err=result.max_abs_err,
        cosine_min=result.cosine_min,
        verdict=result.verdict,
        failures=[f"true fp16 arithmetic: {failure}" for failure in result.failures],
    )
    return record


def with_true_fp16_check(parity: dict, true_fp16: dict) -> dict:
    """The parity record of an fp16 variant with its true-fp16 figures added under
    `reference_evaluator`; a true-fp16 failure fails the verdict."""
    merged = {**parity, "reference_evaluator": true_fp16}
    if true_fp16.get("verdict") == "fail":
        merged["verdict"] = "fail"
        merged["failures"] = [*parity.get("failures", []), *true_fp16["failures"]]
    return merged
