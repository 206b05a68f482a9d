"""Precision variants of an fp32 ONNX model: fp16 with automatic repair, static int8 from a
calibration recipe, and dynamic int8.

fp16 is converted by onnxconverter-common with float32 inputs and outputs kept. A conversion
must load, give finite outputs and stay within the fp16 tolerance of fp32, both in ONNX
Runtime and in onnx's reference evaluator (true fp16 arithmetic: ONNX Runtime's CPU provider
computes most fp16 operators in fp32 and hides overflow). Otherwise it is repaired: the
offending nodes stay fp32, then onnxconverter-common's automatic mixed precision is tried. The
record says which nodes stayed fp32 and why.

Static int8 calibrates on real samples with ONNX Runtime's calibrators, a few samples at a
time so that histogram methods stay within memory, then quantizes from those ranges.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import re
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import load_external_data_for_model
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from onnxstudy.errors import StudyError
from onnxstudy.fidelity import TRUE_FP16_SAMPLES, compare_outputs, reference_evaluator_outputs
from onnxstudy.onnxfile import (
    EXTERNAL_DATA_THRESHOLD_BYTES,
    default_opset,
    derived_threshold,
    external_data_files,
    save_onnx,
    variant_size_bytes,
)
from onnxstudy.runtime import MAX_IR_VERSION, first_line, open_session

log = logging.getLogger(__name__)

# One model input as an array (fed to the graph's only input) or a dict of input name -> array;
# batch axis first either way.
Inputs = np.ndarray | dict[str, np.ndarray]

FP16_MAX = 65504.0
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
QUANT_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
QUANT_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
# Per-channel QDQ writes DequantizeLinear with `axis`, which opset 13 added (QOperator does not).
QDQ_PER_CHANNEL_OPSET = 13
# uint8 activations with int8 per-channel weights in QDQ: the fast, accurate choice on x86 CPUs
# (int8 activations measured no speed-up over fp32 on an AVX-512 VNNI host).
DEFAULT_INT8_RECIPE: dict[str, Any] = {
    "method": "minmax",
    "format": "qdq",
    "per_channel": True,
    "reduce_range": False,
    "activation_type": "uint8",
    "weight_type": "int8",
    "calibration_samples": None,
    "percentile": 99.999,
    "num_bins": None,
}
# Histogram bins when a recipe sets none. Entropy searches thresholds between 128 quantized
# bins and all bins, so ONNX Runtime's own default of 128 bins leaves it one candidate, the
# MinMax range.
DEFAULT_NUM_BINS = {"entropy": 512, "percentile": 2048}
ENTROPY_QUANTIZED_BINS = 128
DEFAULT_INT8_DYNAMIC: dict[str, Any] = {
    "per_channel": True,
    "reduce_range": False,
    "weight_type": "int8",
    "force": False,
}
DEFAULT_FP16: dict[str, Any] = {
    "check_samples": 16,
    "reference_samples": TRUE_FP16_SAMPLES,
    "keep_fp32_ops": [],
}
# Samples the calibrators hold in memory at once (histogram methods keep every activation).
CALIBRATION_CHUNK = 8
# Samples automatic mixed precision validates each of its attempts on.
AMP_SAMPLES = 4
CONV_OPS = ("Conv", "ConvTranspose")
MATMUL_OPS = ("MatMul", "Gemm")


# ----------------------------------------------------------------------------- shared helpers


def graph_inputs(model: onnx.ModelProto) -> list[str]:
    """Names of the graph's real inputs: old IR versions also list initializers as inputs."""
    initializers = {init.name for init in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def as_feeds(
    inputs: Inputs, names: list[str], model_name: str, variant: str
) -> dict[str, np.ndarray]:
    """`inputs` as a dict of input name to array, checked against the graph's input `names`.

    Raises:
        StudyError: When an array is given for a graph with several inputs, a graph input has
            no data, or the inputs differ in number of samples.
    """
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise StudyError(
                model_name,
                variant,
                f"one array of samples was given for a graph with inputs {', '.join(names)}",
                "give the samples as a dict of input name to array",
            )
        inputs = {names[0]: inputs}
    missing = [name for name in names if name not in inputs]
    if missing:
        raise StudyError(
            model_name,
            variant,
            f"the samples have no data for graph input(s) {', '.join(missing)}",
            f"give samples for every graph input ({', '.join(names)})",
        )
    lengths = {len(inputs[name]) for name in names}
    if len(lengths) != 1:
        raise StudyError(
            model_name,
            variant,
            f"the graph inputs have different numbers of samples ({sorted(lengths)})",
            "give every input the same number of samples along axis 0",
        )
    return {name: np.ascontiguousarray(inputs[name]) for name in names}


def sample_count(feeds: dict[str, np.ndarray]) -> int:
    return len(next(iter(feeds.values())))


def take(feeds: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Samples `start` to `stop` (exclusive) of every input."""
    return {name: array[start:stop] for name, array in feeds.items()}


def save_loadable(
    model: onnx.ModelProto,
    path: str | Path,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD_BYTES,
    keep: bool = True,
) -> None:
    """Save `model` atomically with an IR version the pinned runtime loads; weights above
    `external_data_threshold` bytes go to `<path>.data` (onnxfile.save_onnx). keep=False
    when the caller drops `model` afterwards: its external tensors are not read back."""
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    save_onnx(model, path, external_data_threshold, keep)


def uses_external_data(path: str | Path) -> bool:
    """Whether the model at `path` keeps weights in external data: the quantizers must then
    write their own models (augmented, prepared, quantized) that way too, or fail past 2 GB."""
    return bool(external_data_files(path))


def run_model(path: str | Path, feeds: dict[str, np.ndarray], batch: int = 16) -> list[np.ndarray]:
    """Every output of the model at `path` on the CPU, run `batch` samples at a time."""
    opened = open_session(path, "cpu")
    chunks = [opened.run(take(feeds, s, s + batch)) for s in range(0, sample_count(feeds), batch)]
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]


def pre_process(src: str | Path, scratch: Path) -> tuple[Path, str]:
    """Run quant_pre_process (shape inference, graph optimisation) into `scratch`; a model
    with external data gets its prepared copy's weights in external data too.

    Returns:
        (model to quantize, note); when pre-processing fails the model is `src` itself and the
        note says why, and a warning is logged.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(scratch).resolve() / "prepared.onnx"
    source = Path(src).resolve()  # before the chdir below, which a relative `src` depends on
    try:
        # On failure onnxruntime's shape inference dumps a debug model (~size of the model)
        # into the working directory: keep it in the scratch folder instead.
        with contextlib.chdir(prepared.parent):
            quant_pre_process(
                str(source),
                str(prepared),
                skip_symbolic_shape=False,
                save_as_external_data=uses_external_data(source),
                external_data_location=prepared.name + ".data",
            )
        return prepared, ""
    except Exception as error:  # shape inference fails on some graphs; quantizing still works
        note = f"quant_pre_process failed ({first_line(error)}); quantized without it"
        log.warning("%s", note)
        return Path(src), note


# --------------------------------------------------------------------------------------- fp16


@dataclass
class Fp16Attempt:
    """One fp16 conversion and its check.

    Attributes:
        name: `plain`, `block-list` or `auto-mixed-precision`.
        model: The converted model, or None when the converter raised.
        loads: Whether ONNX Runtime loads it.
        problems: Why it does not pass (load error, non-finite outputs, tolerance), as sentences.
        ort_cpu: Fidelity to fp32 measured with ONNX Runtime's CPU provider.
        reference_evaluator: Fidelity to fp32 with true fp16 arithmetic (onnx.reference), or
            a note on why it could not run.
        converter_warnings: What the converter warned about (e.g. constants it clipped).
    """

    name: str
    model: onnx.ModelProto | None
    loads: bool = False
    problems: list[str] = field(default_factory=list)
    ort_cpu: dict = field(default_factory=dict)
    reference_evaluator: dict = field(default_factory=dict)
    converter_warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.loads and not self.problems

    def summary(self) -> dict:
        return {
            "name": self.name,
            "loads": self.loads,
            "passed": self.passed,
            "problems": self.problems,
            "ort_cpu": self.ort_cpu,
            "reference_evaluator": self.reference_evaluator,
            "converter_warnings": self.converter_warnings,
        }


def check_fp16_settings(settings: dict[str, Any], model_name: str) -> dict[str, Any]:
    """`settings` merged over DEFAULT_FP16.

    Raises:
        StudyError: On an unknown key or a value of the wrong kind; the message names the key.
    """
    merged = {**DEFAULT_FP16, **settings}
    for key in settings:
        if key not in DEFAULT_FP16:
            raise StudyError(
                model_name,
                "fp16",
                f"fp16 setting `{key}` is unknown",
                f"use one of {', '.join(DEFAULT_FP16)}",
            )
    for key in ("check_samples", "reference_samples"):
        if not isinstance(merged[key], int) or isinstance(merged[key], bool) or merged[key] < 0:
            raise StudyError(
                model_name, "fp16", f"fp16 `{key}` is {merged[key]!r}", "use a count, 0 or more"
            )
    if not isinstance(merged["keep_fp32_ops"], list | tuple):
        raise StudyError(
            model_name,
            "fp16",
            "fp16 `keep_fp32_ops` is not a list",
            "list operator types, e.g. [Cast, Resize]",
        )
    return merged


def name_nodes(model: onnx.ModelProto) -> int:
    """Give every node of the main graph a unique name, in place; returns how many changed.

    The converter names the casts it inserts after the nodes around them, so unnamed or
    duplicate node names (common in Model Zoo files) give duplicate cast names.
    """
    seen: set[str] = set()
    renamed = 0
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
            while node.name in seen:
                node.name += "_"
            renamed += 1
        seen.add(node.name)
    return renamed


def inferred_graph_only(path: str | Path) -> onnx.ModelProto:
    """The model at `path` with the value types onnx's shape inference gives, its external
    weights not read.

    Inference runs file to file (infer_shapes_path), so it works on models past protobuf's
    2 GB limit, whose weights are in external data; in-memory inference would fail there.
    """
    with tempfile.TemporaryDirectory() as scratch:
        inferred = Path(scratch) / "inferred.onnx"
        onnx.shape_inference.infer_shapes_path(str(path), str(inferred))
        return onnx.load(str(inferred), load_external_data=False)


def shape_inferred(path: str | Path) -> onnx.ModelProto:
    """The model at `path`, weights loaded, with its inferred value types (see
    `inferred_graph_only`)."""
    model = inferred_graph_only(path)
    load_external_data_for_model(model, str(Path(path).parent))
    return model


def convert_fp16(
    model: onnx.ModelProto, node_block_list: list[str], inferred: bool = False
) -> tuple[onnx.ModelProto, list]:
    """onnxconverter-common's conversion with float32 I/O, `node_block_list` kept fp32.

    Constants are clipped to fp16's largest finite value (65504) rather than the converter's
    default of 1e4, so that constants within fp16's range keep their values. With `inferred`
    the model already carries its inferred value types (`shape_inferred`) and the converter
    does not infer them again (its in-memory inference fails on models over 2 GB).

    Returns:
        (converted model, the converter's warnings with their counts, numbers replaced by X)
    """
    from onnxconverter_common import float16

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            copy.deepcopy(model),
            max_finite_val=FP16_MAX,
            keep_io_types=True,
            node_block_list=node_block_list,
            disable_shape_infer=inferred,
        )
    kinds = Counter(
        re.sub(r"number \S+ ", "number X ", str(w.message).splitlines()[0]) for w in caught
    )
    return converted, [f"{count} x {text}" for text, count in sorted(kinds.items())]


def kept_fp32_nodes(original: onnx.ModelProto, converted: str | Path) -> list[str]:
    """Nodes of `original` that still compute in fp32 in the model at `converted`: those with
    a float32 output there (nodes with no float output, such as Shape, are left out)."""
    graph = inferred_graph_only(converted).graph
    types = {
        info.name: info.type.tensor_type.elem_type
        for info in [*graph.value_info, *graph.input, *graph.output]
    }
    types.update({init.name: init.data_type for init in graph.initializer})
    original_names = {node.name for node in original.graph.node}
    kept = []
    for node in graph.node:
        if node.name not in original_names:
            continue
        # A Cast's output type is its `to` attribute: whether it runs in fp32 shows on its input.
        if node.op_type == "Cast":
            fp32 = all(types.get(name) == onnx.TensorProto.FLOAT for name in node.input)
        else:
            fp32 = any(types.get(name) == onnx.TensorProto.FLOAT for name in node.output)
        if fp32:
            kept.append(node.name)
    return kept


def compare_all(
    outputs: list[np.ndarray], expected: list[np.ndarray], tolerance: dict[str, float]
) -> dict:
    """Fidelity of every float output to `expected`: the worst figures, verdict and failures."""
    errors, cosines, failures = [0.0], [1.0], []
    for index, (out, ref) in enumerate(zip(outputs, expected, strict=True)):
        if not np.issubdtype(ref.dtype, np.floating):
            continue
        result = compare_outputs(np.asarray(out), np.asarray(ref), tolerance)
        errors.append(result.max_abs_err)
        cosines.append(result.cosine_min)
        prefix = f"output {index}: " if len(expected) > 1 else ""
        failures += [prefix + failure for failure in result.failures]
    return {
        "samples": len(expected[0]) if expected else 0,
        # np.max / np.min let inf and NaN through, where max() and min() may drop a NaN.
        "max_abs_err": float(np.max(errors)),
        "cosine_min": float(np.min(cosines)),
        "verdict": "fail" if failures else "pass",
        "failures": failures,
    }


def check_fp16(
    attempt: Fp16Attempt,
    feeds: dict[str, np.ndarray],
    expected: list[np.ndarray],
    tolerance: dict[str, float],
    reference_samples: int,
    scratch: Path,
) -> Fp16Attempt:
    """Load `attempt.model`, compare it to the fp32 `expected` outputs on `feeds` with ONNX
    Runtime, then on the first `reference_samples` samples with true fp16 arithmetic."""
    if attempt.model is None:
        return attempt
    path = scratch / f"{attempt.name}.onnx"
    save_loadable(attempt.model, path)
    try:
        outputs = run_model(path, feeds)
    except Exception as error:  # a load or run failure is what the repair acts on
        message = re.sub(r"^Load model from \S+ failed:\s*", "", first_line(error))
        attempt.problems.append(f"ONNX Runtime cannot run it: {message}")
        return attempt
    attempt.loads = True
    attempt.ort_cpu = {"method": "ort-cpu", **compare_all(outputs, expected, tolerance)}
    attempt.problems += [f"ONNX Runtime CPU: {f}" for f in attempt.ort_cpu["failures"]]

    if reference_samples:
        few = take(feeds, 0, reference_samples)
        try:
            true_fp16 = reference_evaluator_outputs(attempt.model, few)
        except Exception as error:  # an operator it lacks; the ORT figures still stand
            attempt.reference_evaluator = {"error": first_line(error)}
            log.warning("%s: reference evaluator cannot run: %s", attempt.name, first_line(error))
            return attempt
        figures = compare_all(true_fp16, [e[:reference_samples] for e in expected], tolerance)
        attempt.reference_evaluator = {"method": "onnx-reference-evaluator", **figures}
        attempt.problems += [f"true fp16 arithmetic: {f}" for f in figures["failures"]]
    return attempt


def offending_op_types(model: onnx.ModelProto, load_error: str) -> dict[str, str]:
    """Op types to keep fp32 after a load failure: those of the nodes the error names, and
    Cast (the converter mistypes explicit casts to float), each with the reason."""
    by_name = {node.name: node.op_type for node in model.graph.node}
    present = set(by_name.values())
    reasons = {}
    for name in re.findall(r"node \(?([^\s()]+)\)?", load_error):
        if name in by_name:
            reasons[by_name[name]] = f"the fp16 graph failed in ONNX Runtime ({load_error})"
    if "Cast" in present and "Cast" not in reasons:
        reasons["Cast"] = (
            "the fp16 graph does not load and the converter mistypes explicit casts to float"
        )
    return reasons


def fp16_range_offenders(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], scratch: Path
) -> dict[str, str]:
    """Nodes that would see values beyond fp16's range, each with the reason.

    An initializer beyond 65504 is blocked at its consumers; a tensor that reaches beyond it
    in fp32 on `feeds` is blocked at its producer and its consumers, since a value computed
    in fp32 overflows again when cast back to fp16 for the next node.
    """
    consumers: dict[str, list[str]] = {}
    producers: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)
        for name in node.output:
            producers[name] = node.name
    offenders: dict[str, str] = {}

    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        peak = float(np.abs(values[np.isfinite(values)]).max()) if values.size else 0.0
        if peak > FP16_MAX:
            for node in consumers.get(init.name, []):
                offenders.setdefault(
                    node, f"initializer {init.name} holds |values| up to {peak:.3g} (> 65504)"
                )

    probe = copy.deepcopy(model)
    graph_outputs = {o.name for o in probe.graph.output}
    for name in producers:
        if name and name not in graph_outputs:
            probe.graph.output.add().name = name
    path = scratch / "range_probe.onnx"
    save_loadable(probe, path)
    try:
        opened = open_session(path, "cpu")
        values = opened.run(feeds)
    except Exception as error:  # the initializer check above still stands
        log.warning("fp16: cannot read the fp32 value ranges: %s", first_line(error))
        return offenders
    names = [o.name for o in opened.session.get_outputs()]
    for name, value in zip(names, values, strict=True):
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating) or value.size == 0:
            continue
        finite = value[np.isfinite(value)]
        peak = float(np.abs(finite).max()) if finite.size else 0.0
        if peak > FP16_MAX:
            reason = f"tensor {name} reaches |x| = {peak:.3g} in fp32 (> 65504)"
            for node in [producers.get(name), *consumers.get(name, [])]:
                if node:
                    offenders.setdefault(node, reason)
    return offenders


def auto_mixed_precision(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], tolerance: dict[str, float]
) -> onnx.ModelProto:
    """onnxconverter-common's automatic mixed precision: it keeps the fewest nodes in fp32
    that bring the ONNX Runtime outputs within `tolerance` on `feeds`.

    Raises:
        Exception: Whatever the tool raises when no mixed model validates or one fails to load.
    """
    from onnxconverter_common.auto_mixed_precision import auto_convert_mixed_precision

    def within_tolerance(fp32_outputs: list, fp16_outputs: list) -> bool:
        return compare_all(fp16_outputs, fp32_outputs, tolerance)["verdict"] == "pass"

    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = auto_convert_mixed_precision(
            copy.deepcopy(model), feeds, validate_fn=within_tolerance, keep_io_types=True
        )
    attempts = chatter.getvalue().count("Running attempt")
    log.info("auto mixed precision: %d attempts", attempts)
    return converted


def convert_to_fp16(
    src: str | Path,
    dst: str | Path,
    samples: Inputs,
    tolerance: dict[str, float],
    model_name: str,
    settings: dict[str, Any] | None = None,
) -> dict:
    """Convert the fp32 model at `src` to fp16 (float32 inputs and outputs), repairing it when
    it does not load, overflows, or leaves the fp16 tolerance of fp32.

    The attempts, in order, until one passes: `plain` conversion; `block-list`, where the op
    types a load error points at (e.g. Cast) and the nodes that see values beyond fp16's range
    stay fp32; onnxconverter-common's `auto-mixed-precision`. When none passes but one loads,
    the most repaired one is written and the record's `failure` says why.

    Args:
        src: The fp32 model.
        dst: Where the fp16 model goes.
        samples: Inputs to check on (calibration samples), an array or a dict by input name.
        tolerance: The fp16 parity criteria (see fidelity.compare_outputs), applied against
            the fp32 model's outputs.
        model_name: For messages.
        settings: Overrides of DEFAULT_FP16: check_samples (ONNX Runtime check, default 16),
            reference_samples (true fp16 check, default 2; 0 turns it off), keep_fp32_ops
            (op types always kept fp32, default none).

    Returns:
        The record: status (`converted`, `repaired` or `failed`), the attempts, the nodes kept
        fp32 with reasons, fidelity figures, seconds, size in bytes and `failure` ("" if none).

    Raises:
        StudyError: When no attempt gives a model ONNX Runtime loads.
    """
    settings = check_fp16_settings(settings or {}, model_name)
    started = time.perf_counter()
    model = shape_inferred(src)
    renamed = name_nodes(model)
    feeds = as_feeds(samples, graph_inputs(model), model_name, "fp16")
    feeds = take(feeds, 0, max(settings["check_samples"], 1))
    reasons: dict[str, str] = {
        node.name: "kept fp32 by the config (fp16 keep_fp32_ops)"
        for node in model.graph.node
        if node.op_type in settings["keep_fp32_ops"]
    }

    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        expected = run_model(src, feeds)

        def attempt(name: str, build) -> Fp16Attempt:
            try:
                converted, converter_warnings = build()
            except Exception as error:  # the converter's own failure ends this attempt only
                tried = Fp16Attempt(
                    name, None, problems=[f"conversion failed: {first_line(error)}"]
                )
            else:
                tried = Fp16Attempt(name, converted, converter_warnings=converter_warnings)
                for text in converter_warnings:
                    log.warning("fp16 %s: converter: %s", name, text)
            tried = check_fp16(
                tried, feeds, expected, tolerance, settings["reference_samples"], scratch
            )
            log.info("fp16 %s: %s", name, "passes" if tried.passed else "; ".join(tried.problems))
            return tried

        attempts = [attempt("plain", lambda: convert_fp16(model, list(reasons), inferred=True))]
        if not attempts[-1].passed:
            blocked = len(reasons)
            if not attempts[-1].loads:
                for op_type, why in offending_op_types(model, attempts[-1].problems[0]).items():
                    for node in model.graph.node:
                        if node.op_type == op_type:
                            reasons.setdefault(node.name, why)
            for node, why in fp16_range_offenders(model, feeds, scratch).items():
                reasons.setdefault(node, why)
            if len(reasons) > blocked:
                attempts.append(
                    attempt("block-list", lambda: convert_fp16(model, list(reasons), inferred=True))
                )
            else:
                log.info("fp16: no op type or value range to block; trying mixed precision")
        if not attempts[-1].passed:
            few = take(feeds, 0, AMP_SAMPLES)
            attempts.append(
                attempt(
                    "auto-mixed-precision",
                    lambda: (auto_mixed_precision(model, few, tolerance), []),
                )
            )

    chosen = next((a for a in attempts if a.passed), None)
    loadable = [a for a in attempts if a.loads]
    if chosen is None and not loadable:
        raise StudyError(
            model_name,
            "fp16",
            "no fp16 conversion loads in ONNX Runtime ("
            + "; ".join(f"{a.name}: {a.problems[0]}" for a in attempts)
            + ")",
            "set `fp16: {keep_fp32_ops: [...]}` for op types these problems name, export at "
            f"a newer `opset:` (this model's is {default_opset(model)}), or remove fp16 from "
            "this model's `variants:`",
        )
    final = chosen or loadable[-1]
    save_loadable(final.model, dst, derived_threshold(src), keep=False)
    return fp16_record(model, final, attempts, reasons, renamed, started, Path(dst))


def fp16_record(
    model: onnx.ModelProto,
    final: Fp16Attempt,
    attempts: list[Fp16Attempt],
    reasons: dict[str, str],
    renamed: int,
    started: float,
    dst: Path,
) -> dict:
    """The fp16 record: what was written, which nodes stayed fp32 and why."""
    from onnxconverter_common import float16

    op_types = {node.name: node.op_type for node in model.graph.node}
    kept = []
    for name in kept_fp32_nodes(model, dst):
        if name in reasons:
            why = reasons[name]
        elif op_types[name] in float16.DEFAULT_OP_BLOCK_LIST:
            why = "onnxconverter-common keeps this op type fp32 by default"
        else:
            why = "automatic mixed precision kept it fp32 to stay within tolerance"
        kept.append({"node": name, "op_type": op_types[name], "reason": why})
    if final.passed:
        status = "converted" if final is attempts[0] else "repaired"
        failure = ""
    else:
        status = "failed"
        failure = "fp16 could not be repaired: " + "; ".join(final.problems)
    record = {
        "status": status,
        "failure": failure,
        "method": final.name,
        "attempts": [a.summary() for a in attempts],
        "kept_fp32": kept,
        "kept_fp32_op_types": dict(Counter(k["op_type"] for k in kept)),
        "renamed_nodes": renamed,
        "fidelity": {"ort_cpu": final.ort_cpu, "reference_evaluator": final.reference_evaluator},
        "seconds": round(time.perf_counter() - started, 3),
        "size_bytes": variant_size_bytes(dst),
    }
    log.info(
        "fp16 %s (%s): %.1f KB, %d nodes kept fp32, %.2f s",
        status,
        final.name,
        record["size_bytes"] / 1024,
        len(kept),
        record["seconds"],
    )
    if failure:
        log.warning("%s", failure)
    return record


# ---------------------------------------------------------------------------------- int8 static


class SampleCalibrationReader(CalibrationDataReader):
    """Feeds calibration samples one at a time, within the range set by `set_range`.

    Args:
        samples: One array (fed under `input_name`) or a dict of input name to array, batch
            axis first.
        input_name: The graph input an array is fed to; unused for a dict.
    """

    def __init__(self, samples: Inputs, input_name: str | None = None) -> None:
        if not isinstance(samples, dict):
            if input_name is None:
                raise ValueError("an array of samples needs the name of the graph input")
            samples = {input_name: samples}
        self.samples = samples
        self.start = 0
        self.stop = sample_count(samples)
        self.position = 0

    def __len__(self) -> int:
        return sample_count(self.samples)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Feed samples `start_index` to `end_index` (exclusive) from now on."""
        self.start, self.stop = start_index, min(end_index, len(self))
        self.position = self.start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= self.stop:
            return None
        sample = take(self.samples, self.position, self.position + 1)
        self.position += 1
        return sample

    def rewind(self) -> None:
        self.position = self.start


def _recipe_error(model_name: str, variant: str, key: str, value: Any, cure: str) -> StudyError:
    return StudyError(model_name, variant, f"int8 recipe key `{key}` has value {value!r}", cure)


def check_int8_recipe(
    recipe: dict[str, Any], model_name: str, variant: str = "int8"
) -> dict[str, Any]:
    """Return `recipe` merged over DEFAULT_INT8_RECIPE, with num_bins filled in per method.

    Raises:
        StudyError: On an unknown key or an invalid value; the message names the key.
    """
    unknown = [key for key in recipe if key not in DEFAULT_INT8_RECIPE]
    if unknown:
        raise StudyError(
            model_name,
            variant,
            f"int8 recipe key `{unknown[0]}` is unknown",
            f"use only {', '.join(DEFAULT_INT8_RECIPE)}",
        )
    merged = {**DEFAULT_INT8_RECIPE, **recipe}
    choices = {
        "method": CALIBRATION_METHODS,
        "format": QUANT_FORMATS,
        "activation_type": QUANT_TYPES,
        "weight_type": QUANT_TYPES,
    }
    for key, allowed in choices.items():
        if merged[key] not in allowed:
            raise _recipe_error(
                model_name, variant, key, merged[key], f"use one of {', '.join(allowed)}"
            )
    for key in ("per_channel", "reduce_range"):
        if not isinstance(merged[key], bool):
            raise _recipe_error(model_name, variant, key, merged[key], "use true or false")
    count = merged["calibration_samples"]
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise _recipe_error(model_name, variant, "calibration_samples", count, "use 1 or more")
    if merged["percentile"] is None:
        merged["percentile"] = DEFAULT_INT8_RECIPE["percentile"]
    percentile = merged["percentile"]
    if isinstance(percentile, bool) or not isinstance(percentile, int | float):
        raise _recipe_error(model_name, variant, "percentile", percentile, "use e.g. 99.99")
    if not 0 < percentile <= 100:
        raise _recipe_error(model_name, variant, "percentile", percentile, "use 0 < p <= 100")
    bins = merged["num_bins"]
    if bins is None:
        merged["num_bins"] = DEFAULT_NUM_BINS.get(merged["method"])
    elif isinstance(bins, bool) or not isinstance(bins, int) or bins < ENTROPY_QUANTIZED_BINS:
        raise _recipe_error(
            model_name, variant, "num_bins", bins, f"use {ENTROPY_QUANTIZED_BINS} or more"
        )
    # Settings of another method are dropped, so that the record shows what was applied.
    if merged["method"] == "minmax":
        merged["num_bins"] = None
    if merged["method"] != "percentile":
        merged["percentile"] = None
    return merged


def calibrate(
    model_path: Path, feeds: dict[str, np.ndarray], recipe: dict[str, Any], scratch: Path
) -> Any:
    """Activation ranges of the model at `model_path` on `feeds`, by the recipe's method.

    Samples go through the calibrator CALIBRATION_CHUNK at a time; the calibrators merge
    their ranges or histograms across chunks.

    Returns:
        onnxruntime's TensorsData.
    """
    from onnxruntime.quantization.calibrate import create_calibrator
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    options: dict[str, Any] = {}
    if recipe["method"] == "entropy":
        options = {"num_bins": recipe["num_bins"], "num_quantized_bins": ENTROPY_QUANTIZED_BINS}
    elif recipe["method"] == "percentile":
        options = {"num_bins": recipe["num_bins"], "percentile": float(recipe["percentile"])}
    calibrator = create_calibrator(
        model_path,
        sorted(set(QDQRegistry) | set(QLinearOpsRegistry)),
        augmented_model_path=str(scratch / "augmented.onnx"),
        calibrate_method=CALIBRATION_METHODS[recipe["method"]],
        use_external_data_format=uses_external_data(model_path),
        extra_options=options,
    )
    reader = SampleCalibrationReader(feeds)
    # The histogram calibrators print their progress; it would land on the terminal.
    with contextlib.redirect_stdout(io.StringIO()):
        for start in range(0, len(reader), CALIBRATION_CHUNK):
            reader.set_range(start, start + CALIBRATION_CHUNK)
            calibrator.collect_data(reader)
        return calibrator.compute_data()


def quantization_parameters(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The scale and zero-point initializers of a quantized model, by name: inputs 1 and 2 of
    QuantizeLinear / DequantizeLinear, and initializers named `*_scale` / `*_zero_point`
    (the QOperator format's QLinear* operators)."""
    initializers = {init.name: init for init in model.graph.initializer}
    names = set()
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name not in initializers:
                continue
            is_qdq = node.op_type in ("QuantizeLinear", "DequantizeLinear") and index in (1, 2)
            if is_qdq or name.endswith(("_scale", "_zero_point")):
                names.add(name)
    return {name: numpy_helper.to_array(initializers[name]) for name in sorted(names)}


def parameters_digest(parameters: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and values of quantization parameters: two
    variants with the same digest have identical scales and zero points."""
    digest = hashlib.sha256()
    for name, value in sorted(parameters.items()):
        digest.update(f"{name}|{value.dtype}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def quantization_summary(path: str | Path) -> dict:
    """Count and digest of the scales and zero points of the quantized model at `path`."""
    parameters = quantization_parameters(onnx.load(str(path)))
    return {"parameters": len(parameters), "digest": parameters_digest(parameters)}


def check_loads(path: Path, model_name: str, variant: str) -> None:
    """Raise a StudyError when ONNX Runtime cannot load the model at `path` (and delete it)."""
    try:
        open_session(path, "cpu")
    except Exception as error:
        path.unlink(missing_ok=True)
        raise StudyError(
            model_name,
            variant,
            f"the {variant} model does not load in ONNX Runtime: {first_line(error)}",
            f"change this variant's recipe, or remove {variant} from the model's `variants:`",
        ) from error


def quantize_int8_static(
    src: str | Path,
    dst: str | Path,
    calibration: Inputs,
    recipe: dict[str, Any],
    model_name: str,
    variant: str = "int8",
) -> dict:
    """Quantize `src` statically, calibrated on real samples, and write `dst`.

    `quant_pre_process` (shape inference and graph optimisation) runs first; when it fails the
    model is quantized without it and the record says so.

    Args:
        src: The fp32 model.
        dst: Where the int8 model goes.
        calibration: Calibration inputs, batch axis first: one array for a single-input graph,
            or a dict of graph input name to array.
        recipe: Overrides of DEFAULT_INT8_RECIPE: method (minmax, entropy, percentile), format
            (qdq, qoperator), per_channel, reduce_range, activation_type and weight_type
            (uint8, int8), calibration_samples (the first N; default all), percentile
            (percentile method, default 99.999), num_bins (entropy 512, percentile 2048).
        model_name: For messages.
        variant: The variant's name (`int8`, `int8_pt`, ...). Defaults to `int8`.

    Returns:
        A record: recipe, calibration samples used, pre-processing note, digest of the scales
        and zero points, seconds and size in bytes.

    Raises:
        StudyError: On an invalid recipe, missing calibration data, a quantizer failure, or a
            result ONNX Runtime does not load.
    """
    recipe = check_int8_recipe(recipe, model_name, variant)
    dst = Path(dst)
    started = time.perf_counter()
    header = onnx.load(str(src), load_external_data=False)
    opset = default_opset(header)
    if recipe["format"] == "qdq" and recipe["per_channel"] and opset < QDQ_PER_CHANNEL_OPSET:
        raise StudyError(
            model_name,
            variant,
            f"per-channel QDQ needs DequantizeLinear's `axis`, added in opset "
            f"{QDQ_PER_CHANNEL_OPSET}; the fp32 model is opset {opset}",
            f"set `opset: {QDQ_PER_CHANNEL_OPSET}` or newer for this model, or `per_channel: "
            "false` (or `format: qoperator`) in its int8 recipe",
        )
    names = graph_inputs(header)
    feeds = as_feeds(calibration, names, model_name, variant)
    available = sample_count(feeds)
    wanted = recipe["calibration_samples"] or available
    if wanted > available:
        raise _recipe_error(
            model_name,
            variant,
            "calibration_samples",
            wanted,
            f"use at most the model's {available} calibration samples, or raise the model's "
            "`calibration_samples`",
        )
    feeds = take(feeds, 0, wanted)

    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        tmp = scratch / "quantized.onnx"
        prepared, preprocess_note = pre_process(src, scratch)
        try:
            ranges = calibrate(prepared, feeds, recipe, scratch)
            cache = scratch / "ranges.json"
            save_calibration(ranges, cache)
            quantize_static(
                str(prepared),
                str(tmp),
                quant_format=QUANT_FORMATS[recipe["format"]],
                per_channel=recipe["per_channel"],
                reduce_range=recipe["reduce_range"],
                activation_type=QUANT_TYPES[recipe["activation_type"]],
                weight_type=QUANT_TYPES[recipe["weight_type"]],
                calibrate_method=CALIBRATION_METHODS[recipe["method"]],
                calibration_cache_path=str(cache),
                use_external_data_format=uses_external_data(prepared),
            )
        except Exception as error:  # the quantizer's errors become a sentence with a cure
            raise StudyError(
                model_name,
                variant,
                f"static quantization with {recipe['method']}/{recipe['format']} failed: "
                f"{first_line(error)}",
                "try another recipe (method, format, per_channel) for this variant",
            ) from error
        save_loadable(onnx.load(str(tmp)), dst, derived_threshold(src), keep=False)
    check_loads(dst, model_name, variant)

    record = {
        "recipe": recipe,
        "preprocessed": not preprocess_note,
        "preprocess_note": preprocess_note,
        "calibration_samples": wanted,
        "quantization": quantization_summary(dst),
        "seconds": round(time.perf_counter() - started, 3),
        "size_bytes": variant_size_bytes(dst),
    }
    log.info(
        "%s (%s, %s, %d samples): %.1f KB in %.2f s, %d scales and zero points",
        variant,
        recipe["method"],
        recipe["format"],
        wanted,
        record["size_bytes"] / 1024,
        record["seconds"],
        record["quantization"]["parameters"],
    )
    return record


def save_calibration(ranges: Any, path: Path) -> None:
    """Write calibrated ranges where quantize_static reads them (`calibration_cache_path`)."""
    from onnxruntime.quantization.calibrate import save_tensors_data

    save_tensors_data(ranges, path)


# --------------------------------------------------------------------------------- int8 dynamic


def check_int8_dynamic(settings: dict[str, Any], model_name: str) -> dict[str, Any]:
    """`settings` merged over DEFAULT_INT8_DYNAMIC.

    Raises:
        StudyError: On an unknown key or an invalid value; the message names the key.
    """
    for key in settings:
        if key not in DEFAULT_INT8_DYNAMIC:
            raise StudyError(
                model_name,
                "int8dyn",
                f"int8dyn setting `{key}` is unknown",
                f"use only {', '.join(DEFAULT_INT8_DYNAMIC)}",
            )
    merged = {**DEFAULT_INT8_DYNAMIC, **settings}
    for key in ("per_channel", "reduce_range", "force"):
        if not isinstance(merged[key], bool):
            raise StudyError(
                model_name, "int8dyn", f"int8dyn `{key}` is {merged[key]!r}", "use true or false"
            )
    if merged["weight_type"] not in QUANT_TYPES:
        raise StudyError(
            model_name,
            "int8dyn",
            f"int8dyn `weight_type` is {merged['weight_type']!r}",
            f"use one of {', '.join(QUANT_TYPES)}",
        )
    return merged


def plan_int8_dynamic(src: str | Path, settings: dict[str, Any], model_name: str) -> dict:
    """Decide whether dynamic int8 fits the model at `src`.

    Dynamic quantization suits graphs whose work is in MatMul and Gemm (transformers, MLPs).
    A graph with more Conv / ConvTranspose nodes than MatMul / Gemm nodes is skipped unless
    `force` is set: dynamic int8 turns Conv into ConvInteger, whose CPU kernels are slow or
    missing.

    Returns:
        {"build": bool, "reason": str ("" when built unforced), "op_counts": {...}, "forced"}
    """
    settings = check_int8_dynamic(settings, model_name)
    graph = onnx.load(str(src), load_external_data=False).graph
    counts = Counter(node.op_type for node in graph.node)
    conv = sum(counts[op] for op in CONV_OPS)
    matmul = sum(counts[op] for op in MATMUL_OPS)
    plan = {
        "op_counts": {"conv": conv, "matmul_gemm": matmul},
        "forced": settings["force"],
        "build": True,
        "reason": "",
    }
    if matmul == 0 and conv == 0:
        plan["reason"] = "the graph has no MatMul, Gemm or Conv for dynamic int8 to quantize"
    elif conv >= matmul:
        plan["reason"] = (
            f"convolutional model ({conv} Conv against {matmul} MatMul/Gemm): dynamic int8 "
            "turns Conv into ConvInteger, whose CPU kernels are slow or missing; set "
            "`int8dyn: {force: true}` to build it anyway"
        )
    if plan["reason"] and not settings["force"]:
        plan["build"] = False
        log.warning("int8dyn skipped: %s", plan["reason"])
    elif plan["reason"]:
        log.warning("int8dyn forced although %s", plan["reason"])
    return plan


def gemm_as_matmul(model: onnx.ModelProto) -> int:
    """Rewrite each plain Gemm with a constant B (alpha = beta = 1, A not transposed) as MatMul
    plus Add, in place; returns how many. Dynamic quantization handles MatMul, not Gemm.

    A transposed B is a new initializer; the old one is removed when nothing else uses it, so
    the model does not carry its weights twice.
    """
    initializers = {init.name: init for init in model.graph.initializer}
    nodes = []
    replaced = set()
    rewritten = 0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            node.op_type == "Gemm"
            and node.input[1] in initializers
            and attrs.get("alpha", 1.0) == 1.0
            and attrs.get("beta", 1.0) == 1.0
            and not attrs.get("transA", 0)
        )
        if not plain:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        replaced.add(node.input[1])
        name = f"{node.name or 'gemm'}_{rewritten}_weight"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), name))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(
            onnx.helper.make_node(
                "MatMul", [node.input[0], name], [product], name=f"{node.name}_matmul"
            )
        )
        if has_bias:
            nodes.append(
                onnx.helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"
                )
            )
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    unused = replaced - used_names(model.graph)
    for index in reversed(range(len(model.graph.initializer))):
        if model.graph.initializer[index].name in unused:
            del model.graph.initializer[index]
    return rewritten


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Every value name a node of `graph` or of its subgraphs reads, and the graph's outputs."""
    names = {output.name for output in graph.output}
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs]:
                names |= used_names(subgraph)
    return names


def quantize_int8_dynamic(
    src: str | Path, dst: str | Path, settings: dict[str, Any], model_name: str
) -> dict:
    """Quantize the weights of `src` to int8 dynamically (activations at run time); write `dst`.

    Gemm nodes with constant weights are rewritten as MatMul + Add first, since the dynamic
    quantizer handles MatMul only; `quant_pre_process` runs first where it can.

    Args:
        src: The fp32 model.
        dst: Where the model goes.
        settings: Overrides of DEFAULT_INT8_DYNAMIC: per_channel (default true; better
            fidelity on transformers), reduce_range (false), weight_type (int8), force.
        model_name: For messages.

    Returns:
        A record: settings, Gemm nodes rewritten, pre-processing note, seconds, size in bytes.

    Raises:
        StudyError: When the quantizer fails or ONNX Runtime does not load the result.
    """
    settings = check_int8_dynamic(settings, model_name)
    dst = Path(dst)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        tmp = scratch / "quantized.onnx"
        model = onnx.load(str(src))
        name_nodes(model)
        rewritten = gemm_as_matmul(model)
        unfolded = scratch / "unfolded.onnx"
        save_loadable(model, unfolded, keep=False)
        del model
        prepared, preprocess_note = pre_process(unfolded, scratch)
        try:
            quantize_dynamic(
                str(prepared),
                str(tmp),
                per_channel=settings["per_channel"],
                reduce_range=settings["reduce_range"],
                weight_type=QUANT_TYPES[settings["weight_type"]],
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                use_external_data_format=uses_external_data(prepared),
            )
        except Exception as error:  # the quantizer's errors become a sentence with a cure
            raise StudyError(
                model_name,
                "int8dyn",
                f"dynamic quantization failed: {first_line(error)}",
                "try per_channel: false, or remove int8dyn from the model's `variants:`",
            ) from error
        save_loadable(onnx.load(str(tmp)), dst, derived_threshold(src), keep=False)
    check_loads(dst, model_name, "int8dyn")
    quantized = Counter(node.op_type for node in onnx.load(str(dst)).graph.node)
    record = {
        "settings": settings,
        "gemm_rewritten": rewritten,
        "preprocessed": not preprocess_note,
        "preprocess_note": preprocess_note,
        "integer_ops": {op: n for op, n in quantized.items() if "Integer" in op or "Dynamic" in op},
        "seconds": round(time.perf_counter() - started, 3),
        "size_bytes": variant_size_bytes(dst),
    }
    log.info(
        "int8dyn: %.1f KB in %.2f s, integer ops %s",
        record["size_bytes"] / 1024,
        record["seconds"],
        record["integer_ops"],
    )
    return record


def skipped_row(model: str, variant: str, provider: str, batch: int, plan: dict) -> dict:
    """The benchmark-table row of a cell its plan skipped: status `skipped` and the reason."""
    return {
        "model": model,
        "variant": variant,
        "provider": provider,
        "batch": batch,
        "status": "skipped",
        "reason": plan["reason"],
        "provider_used": "",
    }
