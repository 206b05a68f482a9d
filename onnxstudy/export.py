"""Export PyTorch models to ONNX files the pinned ONNX Runtime loads, and say how far to trust them.

Every export is checked (onnx's full checker on the file, a load in ONNX Runtime) and records
what a reader needs to judge it: exporter, opset, IR version, node count, operator types, the
exporter's warnings, seconds and peak memory. A traced graph freezes every branch that PyTorch
took on the export example's values, so `check_data_dependence` runs the file and PyTorch on
inputs unlike that example (other batch sizes; negated, scaled and shifted values) and says
`diverges` when they disagree. Weights above a size threshold (2 GB by default, below
protobuf's limit) are written to one `<file>.data` beside the .onnx (see onnxstudy.onnxfile).
`export_and_verify` is the workflow's export: the file, the check and its test data set.
"""

from __future__ import annotations

import contextlib
import logging
import re
import resource
import shutil
import sys
import sysconfig
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from onnxstudy.config import ModelSpec
from onnxstudy.errors import StudyError
from onnxstudy.onnxfile import (
    EXTERNAL_DATA_THRESHOLD_BYTES,
    default_opset,
    publish_onnx,
    variant_size_bytes,
    write_onnx,
)
from onnxstudy.runtime import MAX_IR_VERSION, first_line, open_session
from onnxstudy.zoo import write_test_data_set

log = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
# onnxruntime-gpu 1.31 loads at most opset 26 (and IR 13: runtime.MAX_IR_VERSION).
MAX_OPSET = 26
# The newest opset each exporter writes: torch 2.14's tracing exporter stops at 23
# (torch.onnx._constants.ONNX_MAX_OPSET; a test keeps the two equal); dynamo, at the runtime's.
EXPORTER_MAX_OPSET = {"torchscript": 23, "dynamo": MAX_OPSET}
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Largest |onnx - torch| / max |torch| per output that still counts as the same computation.
DATA_DEPENDENCE_MAX_REL_ERR = 1e-3
# Loggers of the exporters that stop propagation; their warnings are captured at each of them.
_EXPORTER_LOGGERS = ("torch", "torch.onnx", "torch._dynamo", "torch.export", "onnxscript")
_OPERATOR = re.compile(r"\b((?:aten|prim|torchvision|quantized|onnx)(?:::|\.)[A-Za-z_]\w*)")
_ADDED_IN_OPSET = re.compile(r"added in (?:opset )?version (\d+)")
_SOURCE_LINE = re.compile(r'File "([^"]+)", line (\d+)(?:, in (\S+))?\n\s*(\S[^\n]*)')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ExportOptions:
    """How one model is exported.

    Attributes:
        exporter: `torchscript` (tracing; the default) or `dynamo` (torch.export).
        opset: Opset asked of the exporter; dynamo writes 18 when it cannot convert down.
        input_names: Graph input names, one per positional argument of `forward`.
        output_names: Graph output names, one per output of `forward`.
        dynamic_axes: Per input or output name, axis index to symbolic name. None (the
            default) makes axis 0 of every input and output a dynamic `batch`.
        external_data_threshold: Initializer bytes above which all weights go to one
            `<file>.data` beside the .onnx. Defaults to 2e9.
    """

    exporter: str = "torchscript"
    opset: int = 17
    input_names: tuple[str, ...] = (INPUT_NAME,)
    output_names: tuple[str, ...] = (OUTPUT_NAME,)
    dynamic_axes: dict[str, dict[int, str]] | None = None
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD_BYTES

    def axes(self) -> dict[str, dict[int, str]]:
        """The dynamic axes to export with, defaults applied."""
        if self.dynamic_axes is not None:
            return self.dynamic_axes
        return {name: {0: "batch"} for name in (*self.input_names, *self.output_names)}


def check_export_options(options: ExportOptions, model_name: str) -> None:
    """Refuse options the exporters or the pinned runtime cannot honour, before any work.

    Raises:
        StudyError: For an unknown exporter, an opset outside 7-26 or past what the exporter
            writes (torchscript: 23), or a negative threshold.
    """
    if options.exporter not in EXPORTERS:
        raise StudyError(
            model_name,
            "fp32",
            f"exporter '{options.exporter}' is unknown",
            f"set `exporter:` to one of {', '.join(EXPORTERS)}",
        )
    if options.opset > MAX_OPSET:
        raise StudyError(
            model_name,
            "fp32",
            f"opset {options.opset} is newer than the pinned onnxruntime loads ({MAX_OPSET})",
            f"set `opset:` to {MAX_OPSET} or lower for this model",
        )
    if options.opset < 7:
        raise StudyError(
            model_name, "fp32", f"opset {options.opset} is too old", "set `opset:` to 7-26"
        )
    newest = EXPORTER_MAX_OPSET[options.exporter]
    if options.opset > newest:
        raise StudyError(
            model_name,
            "fp32",
            f"the {options.exporter} exporter writes at most opset {newest}, not {options.opset}",
            f"set `exporter: dynamo` for opsets {newest + 1}-{MAX_OPSET}, or `opset: {newest}` "
            "or lower, for this model",
        )
    if options.external_data_threshold < 0:
        raise StudyError(
            model_name,
            "fp32",
            f"external data threshold {options.external_data_threshold} is negative",
            "give a size in bytes, 0 or more",
        )


def export_model(
    model: nn.Module,
    example: np.ndarray | Sequence[np.ndarray],
    out_path: str | Path,
    options: ExportOptions,
    model_name: str,
) -> dict:
    """Export `model` called on `example`, make the file loadable, check it, move it in place.

    The file is staged in `<out_path>.partial/`, its IR version lowered to 13 where needed,
    written with external data above `options.external_data_threshold`, checked with onnx's
    full checker (path based, so it works beyond 2 GB) and opened in ONNX Runtime; only then
    are the .onnx (and its .data) moved beside `out_path`. Outputs are not compared here.

    Args:
        model: The module; it is put in eval mode.
        example: One array per input of `forward`, batch axis first.
        out_path: Where the .onnx goes; external data goes to `<out_path>.data`.
        options: Exporter, opset, names, dynamic axes and the external data threshold.
        model_name: Name of the model in config.yaml, for messages.

    Returns:
        The export record: exporter, opset_requested, opset, ir_version, nodes, op_types,
        warnings (`Category: message [file:line]`), trace_warnings (the TracerWarnings among
        them), seconds (the exporter's call), total_seconds (with the rewrite and the
        checks), peak_rss_bytes and peak_rss_increase_bytes over all of it with
        peak_memory_method, size_bytes (with external data) and external_data (file name, or
        None).

    Raises:
        StudyError: When the options are refused, the exporter fails (the message names the
            operator or source line where the exception does), or the file is not loadable.
    """
    check_export_options(options, model_name)
    arrays = [example] if isinstance(example, np.ndarray) else list(example)
    out_path = Path(out_path)
    staging = out_path.with_name(out_path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "raw").mkdir(parents=True)
    started = time.perf_counter()
    try:
        with peak_rss() as memory:
            with capture_exporter_messages() as messages:
                try:
                    _run_exporter(model.eval(), arrays, staging / "raw" / "model.onnx", options)
                except Exception as error:
                    raise export_failure(error, options, model_name) from error
            seconds = time.perf_counter() - started
            proto = onnx.load(str(staging / "raw" / "model.onnx"))
            opset = make_loadable(proto, options, model_name)
            ir_version = proto.ir_version
            ops = Counter(node.op_type for node in proto.graph.node)
            nodes = len(proto.graph.node)
            staged = staging / out_path.name
            external = write_onnx(proto, staged, options.external_data_threshold, keep=False)
            del proto
            check_onnx_file(staged, model_name)
        publish_onnx(staged, out_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    record = {
        "exporter": options.exporter,
        "opset_requested": options.opset,
        "opset": opset,
        "ir_version": ir_version,
        "nodes": nodes,
        "op_types": dict(sorted(ops.items())),
        "warnings": messages.warnings,
        "trace_warnings": [text for text in messages.warnings if text.startswith("TracerWarning")],
        "seconds": round(seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        **memory,
        "size_bytes": variant_size_bytes(out_path),
        "external_data": external,
    }
    if record["opset"] != options.opset:
        log.warning(
            "%s: asked for opset %d, the %s exporter wrote %d",
            model_name,
            options.opset,
            options.exporter,
            record["opset"],
        )
    log.info(
        "exported %s with %s: opset %d, %d nodes, %.1f MB%s, %.2f s, %d warnings (%d trace)",
        model_name,
        options.exporter,
        record["opset"],
        nodes,
        record["size_bytes"] / 1e6,
        f" (external data {external})" if external else "",
        seconds,
        len(record["warnings"]),
        len(record["trace_warnings"]),
    )
    return record


def _run_exporter(
    model: nn.Module, arrays: list[np.ndarray], path: Path, options: ExportOptions
) -> None:
    """Call torch.onnx.export with the chosen exporter; it may write external data files."""
    args = tuple(torch.from_numpy(np.ascontiguousarray(array)) for array in arrays)
    axes = options.axes()
    common = {
        "opset_version": options.opset,
        "input_names": list(options.input_names),
        "output_names": list(options.output_names),
    }
    if options.exporter == "torchscript":
        torch.onnx.export(model, args, str(path), dynamo=False, dynamic_axes=axes, **common)
        return
    dynamic_shapes = tuple(
        {axis: torch.export.Dim.DYNAMIC for axis in axes.get(name, {})} or None
        for name in options.input_names
    )
    torch.onnx.export(
        model,
        args,
        str(path),
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        external_data=True,
        verbose=False,
        **common,
    )


@dataclass
class ExporterMessages:
    """What the exporter said: Python warnings and its loggers' warnings, deduplicated."""

    warnings: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


class _WarningCollector(logging.Handler):
    def __init__(self, messages: ExporterMessages) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        where = _short_path(record.pathname, record.lineno)
        self.messages.add(f"{record.levelname.title()}: {_first(record.getMessage())} [{where}]")


@contextlib.contextmanager
def capture_exporter_messages() -> Iterator[ExporterMessages]:
    """Collect every Python warning and every exporter log record of WARNING or above.

    Entries read `Category: first line of the message [file:line]`, where the file is shortened
    to its path below site-packages; repeats are kept once, in order of appearance.
    """
    messages = ExporterMessages()
    collector = _WarningCollector(messages)
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    for logger in loggers:
        logger.addHandler(collector)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
    finally:
        for logger in loggers:
            logger.removeHandler(collector)
        for warning in caught:
            where = _short_path(warning.filename, warning.lineno)
            messages.add(f"{warning.category.__name__}: {_first(str(warning.message))} [{where}]")


@contextlib.contextmanager
def peak_rss() -> Iterator[dict]:
    """Measure the resident memory peak of this process over the block, in bytes.

    On Linux the kernel's high-water mark is reset first (writing 5 to /proc/self/clear_refs),
    so `ru_maxrss` afterwards is the peak of the block itself. Where that is refused, the
    figure is the growth of the process's lifetime peak: 0 when an earlier peak was higher.
    tracemalloc would miss torch's and onnx's native allocations, which dominate here.

    Yields:
        A dict filled on exit with peak_rss_bytes (peak of the process during the block),
        peak_rss_increase_bytes (that peak minus the RSS at the start) and peak_memory_method.
    """
    reset = _reset_rss_peak()
    before = _current_rss() if reset else _maxrss_bytes()
    figures: dict = {}
    try:
        yield figures
    finally:
        peak = _maxrss_bytes()
        figures["peak_rss_bytes"] = peak
        figures["peak_rss_increase_bytes"] = max(0, peak - before)
        figures["peak_memory_method"] = (
            "ru_maxrss after resetting the peak (Linux clear_refs)"
            if reset
            else "ru_maxrss growth (a lower bound: 0 when an earlier peak was higher)"
        )


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _current_rss() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def _maxrss_bytes() -> int:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def export_failure(error: Exception, options: ExportOptions, model_name: str) -> StudyError:
    """Turn an exporter exception into a StudyError naming the operator and the source line.

    The operator (`aten::grid_sampler`, `aten.nonzero`, ...) and the user source line (the
    `File "...", line N` the exporter quotes, else the last traceback frame outside torch and
    the standard library) are reported when the exception carries them. The cure suggests
    the opset the exporter asks for, else the other exporter and another opset.
    """
    chain = _exception_chain(error)
    text = "\n".join(_ANSI.sub("", str(link)) for link in chain)
    root = chain[-1]
    cause = f"the {options.exporter} exporter failed: {type(root).__name__}: {_first(str(root))}"
    operator = _OPERATOR.search(text)
    if operator:
        cause += f"; operator {operator.group(1)}"
    where = _source_line(text, chain)
    if where:
        cause += f"; at {where}"

    other = "dynamo" if options.exporter == "torchscript" else "torchscript"
    added = _ADDED_IN_OPSET.search(text)
    if added and int(added.group(1)) <= MAX_OPSET:
        cure = f"set `opset: {added.group(1)}` (or newer) for this model"
    else:
        newest = EXPORTER_MAX_OPSET.get(options.exporter, MAX_OPSET)
        cure = f"set `exporter: {other}` for this model, or another `opset:` (7-{newest})"
    if "data-dependent" in text or "GuardOnDataDependent" in text:
        cure += "; a branch on tensor values needs torch.where or torch.cond to be exported"
    elif not added and operator:
        cure += f", or replace {operator.group(1)} in the model"
    return StudyError(model_name, "fp32", cause, cure)


def _exception_chain(error: BaseException) -> list[BaseException]:
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__)
    return chain


def _source_line(text: str, chain: list[BaseException]) -> str | None:
    """`file:line (code)` of the model code the failure points at, or None."""
    quoted = [m for m in _SOURCE_LINE.finditer(text) if not _is_library(m.group(1))]
    if quoted:
        match = quoted[-1]
        return f"{_short_path(match.group(1), int(match.group(2)))} ({match.group(4).strip()})"
    frames = [
        frame
        for link in chain
        for frame in traceback.extract_tb(link.__traceback__)
        if not _is_library(frame.filename) and Path(frame.filename) != Path(__file__)
    ]
    if frames:
        frame = frames[-1]
        return f"{_short_path(frame.filename, frame.lineno)} ({(frame.line or '').strip()})"
    return None


def _is_library(filename: str) -> bool:
    """True for files of torch, onnx, onnxscript or Python itself (not the model's code)."""
    path = str(Path(filename))
    libraries = [str(Path(torch.__file__).parent), sysconfig.get_paths()["stdlib"]]
    libraries += [str(Path(onnx.__file__).parent)]
    return any(path.startswith(prefix) for prefix in libraries) or "onnxscript" in path


def _short_path(filename: str, lineno: int | None) -> str:
    _, marker, below = filename.partition("site-packages/")
    return f"{below if marker else filename}:{lineno}"


def _first(text: str, limit: int = 200) -> str:
    """The first non-empty line of `text` without colour codes, cut to `limit` characters."""
    lines = [line.strip() for line in _ANSI.sub("", text).strip().splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def make_loadable(proto: onnx.ModelProto, options: ExportOptions, model_name: str) -> int:
    """Lower the IR version to 13 in place; refuse an opset the pinned runtime cannot load.

    Returns:
        The model's default-domain opset.

    Raises:
        StudyError: When the exporter wrote an opset above 26.
    """
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    opset = default_opset(proto)
    if opset > MAX_OPSET:
        raise StudyError(
            model_name,
            "fp32",
            f"the {options.exporter} exporter wrote opset {opset}; the runtime loads {MAX_OPSET}",
            "set `exporter: torchscript` or a lower `opset:` for this model",
        )
    return opset


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset of the model at `path` (external data is not read)."""
    return default_opset(onnx.load(str(path), load_external_data=False))


def check_onnx_file(path: str | Path, model_name: str, variant: str = "fp32") -> None:
    """Run onnx's full checker on the file (works with external data) and open it in ORT.

    Raises:
        StudyError: When the checker or ONNX Runtime refuses the file.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as error:
        raise StudyError(
            model_name,
            variant,
            f"the exported file fails onnx's checker: {_first(str(error))}",
            "try another `opset:` or `exporter:` for this model",
        ) from error
    try:
        open_session(path, "cpu")
    except Exception as error:
        raise StudyError(
            model_name,
            variant,
            f"ONNX Runtime cannot load the exported file: {first_line(error)}",
            "try another `opset:` or `exporter:` for this model",
        ) from error


def torch_outputs(model: nn.Module, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Every output of `model(*inputs)` under inference mode, as numpy arrays, in order."""
    with torch.inference_mode():
        outputs = model(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)
    elif isinstance(outputs, dict):
        outputs = tuple(outputs.values())
    return [output.detach().numpy() for output in outputs]


def export_to_onnx(
    model: nn.Module,
    example: np.ndarray,
    out_path: str | Path,
    spec: ModelSpec,
    *,
    exporter: str = "torchscript",
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD_BYTES,
) -> dict:
    """Export a one-input, one-output model with a dynamic batch axis and `spec.opset`.

    `export_model` does the export and the checks; the file is then run once with ONNX
    Runtime against PyTorch on `example`.

    Args:
        model: The module.
        example: The export example, batch axis first.
        out_path: Where the .onnx goes.
        spec: The model's spec (name and opset are read).
        exporter: `torchscript` (default) or `dynamo`.
        external_data_threshold: Weight bytes above which external data is written.
            Defaults to 2e9.

    Returns:
        The record of `export_model` plus example_max_abs_err.

    Raises:
        StudyError: When the export or a check fails; the message names the cause.
    """
    options = ExportOptions(
        exporter=exporter, opset=spec.opset, external_data_threshold=external_data_threshold
    )
    record = export_model(model, example, out_path, options, spec.name)
    onnx_output = open_session(out_path, "cpu").run(example)[0]
    max_abs = float(np.abs(onnx_output - torch_outputs(model, [example])[0]).max())
    record["example_max_abs_err"] = max_abs
    log.info("%s: max abs diff to PyTorch on the example %.2e", spec.name, max_abs)
    return record


def value_variations(inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs whose values differ from `inputs` in sign, scale and offset, by description.

    The shift is twice the inputs' standard deviation (1.0 when they are constant).
    """
    shift = float(2 * inputs.std()) or 1.0
    return {
        "as is": inputs,
        "negated": -inputs,
        "scaled x10": inputs * 10,
        "scaled x0.1": inputs * 0.1,
        f"shifted +{shift:.3g}": inputs + shift,
    }


def check_data_dependence(
    model: nn.Module,
    onnx_path: str | Path,
    inputs: np.ndarray,
    example_batch: int,
    max_rel_err: float = DATA_DEPENDENCE_MAX_REL_ERR,
    batch_sizes: Sequence[int] | None = None,
) -> dict:
    """Compare the exported file with PyTorch on inputs unlike the export example.

    Each case takes the first `batch` rows of `inputs` (repeated when there are fewer) with
    one value variation (`value_variations`; integer inputs only as is) at batch sizes that
    differ from the example's. A case diverges when an output's shape differs, ONNX Runtime
    fails, or max |onnx - torch| / max |torch| exceeds `max_rel_err` for some output
    (positions where both are the same inf or both NaN count as equal).

    Args:
        model: The PyTorch module that was exported.
        onnx_path: The exported file.
        inputs: Evaluation inputs of the single graph input, batch axis first.
        example_batch: Batch size of the export example.
        max_rel_err: Largest relative error of a consistent case. Defaults to 1e-3.
        batch_sizes: Batch sizes to try. Defaults to 1 and example_batch + 3.

    Returns:
        {"verdict": "diverges" | "consistent", "diverging_inputs": [descriptions],
        "max_rel_err_allowed": float, "cases": [{"inputs", "variation", "batch", "samples",
        "max_rel_err", "verdict", "reason"}]}; a case whose PyTorch run fails is `skipped`.
    """
    batch_sizes = list(batch_sizes or (1, example_batch + 3))
    session = open_session(onnx_path, "cpu")
    floating = np.issubdtype(inputs.dtype, np.floating)
    cases = []
    for batch in batch_sizes:
        rows = np.resize(inputs, (batch, *inputs.shape[1:])).astype(inputs.dtype)
        variations = value_variations(rows) if floating else {"as is": rows}
        for variation, values in variations.items():
            case = _compare_case(model, session, values.astype(inputs.dtype), max_rel_err)
            samples = f"evaluation samples 0-{min(batch, len(inputs)) - 1}"
            if batch > len(inputs):
                samples += " repeated"
            case = {
                "inputs": f"{variation}, batch {batch}",
                "variation": variation,
                "batch": batch,
                "samples": samples,
                **case,
            }
            cases.append(case)

    return data_dependence_record(cases, max_rel_err_allowed=max_rel_err)


def data_dependence_record(cases: list[dict], **method: Any) -> dict:
    """The export check's record from its cases (each with `inputs` and `verdict`): the
    verdict, `diverges` when any case does, the inputs that showed it, then `method`'s items
    (how the cases were judged) and the cases. A divergence is logged as a warning."""
    diverging = [case["inputs"] for case in cases if case["verdict"] == "diverges"]
    if diverging:
        log.warning("the export diverges from PyTorch on: %s", "; ".join(diverging))
    return {
        "verdict": "diverges" if diverging else "consistent",
        "diverging_inputs": diverging,
        **method,
        "cases": cases,
    }


def _compare_case(model: nn.Module, session, values: np.ndarray, max_rel_err: float) -> dict:
    try:
        expected = torch_outputs(model, [values])
    except Exception as error:
        return {
            "max_rel_err": None,
            "verdict": "skipped",
            "reason": f"PyTorch: {_first(str(error))}",
        }
    try:
        actual = session.run(values)
    except Exception as error:
        return {
            "max_rel_err": None,
            "verdict": "diverges",
            "reason": f"ONNX Runtime: {first_line(error)}",
        }
    worst = 0.0
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want.shape != got.shape:
            reason = f"output {index} has shape {got.shape}, PyTorch {want.shape}"
            return {"max_rel_err": None, "verdict": "diverges", "reason": reason}
        worst = max(worst, _relative_error(got, want))
    verdict = "diverges" if worst > max_rel_err else "consistent"
    reason = f"relative error {worst:.3g} above {max_rel_err:g}" if verdict == "diverges" else ""
    return {"max_rel_err": worst, "verdict": verdict, "reason": reason}


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected| over positions that are not equal specials."""
    actual = actual.astype(np.float64)
    expected = expected.astype(np.float64)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    if same.all():
        return 0.0
    diff = np.abs(actual - expected)[~same]
    scale = np.abs(expected[np.isfinite(expected)]).max(initial=0.0) or 1.0
    return float(diff.max() / scale) if np.isfinite(diff).all() else float("inf")


def write_reference_test_data(model: nn.Module, example: np.ndarray, directory: str | Path) -> None:
    """Write `test_data_set_0` beside the export: the example and PyTorch's output on it."""
    output = torch_outputs(model, [example])[0].astype(np.float32)
    write_test_data_set(directory, {INPUT_NAME: example}, {OUTPUT_NAME: output})


def export_and_verify(
    model: nn.Module,
    spec: ModelSpec,
    evaluation: np.ndarray,
    out_path: str | Path,
    test_data_dir: str | Path,
    example_batch: int = 2,
) -> dict:
    """Export a one-input model as `spec` says and check it on inputs unlike the example.

    The export example is the first `example_batch` evaluation samples; exporter, opset and
    external data threshold are the spec's. `check_data_dependence` then runs the file and
    PyTorch on the evaluation samples at other batch sizes and value ranges, and
    `test_data_dir` gets the example and PyTorch's output in the Model Zoo layout.

    Returns:
        The record of `export_to_onnx` plus data_dependence (`check_data_dependence`).

    Raises:
        StudyError: When the export or a check of the file fails.
    """
    example = evaluation[:example_batch]
    record = export_to_onnx(
        model,
        example,
        out_path,
        spec,
        exporter=spec.exporter,
        external_data_threshold=spec.external_data_threshold,
    )
    record["data_dependence"] = check_data_dependence(model, out_path, evaluation, len(example))
    write_reference_test_data(model, example, test_data_dir)
    verdict = record["data_dependence"]
    log.info(
        "%s: export check on %d other inputs: %s",
        spec.name,
        len(verdict["cases"]),
        verdict["verdict"],
    )
    return record
