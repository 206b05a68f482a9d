"""Export PyTorch models to ONNX that the pinned ONNX Runtime loads, and check them."""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from onnxstudy.config import ModelSpec
from onnxstudy.errors import StudyError
from onnxstudy.runtime import run_onnx
from onnxstudy.sources import run_torch
from onnxstudy.zoo import write_test_data_set

log = logging.getLogger(__name__)

# onnxruntime-gpu 1.31 loads at most IR 13 and opset 26 (onnx 1.23 writes IR 14 by default).
MAX_IR_VERSION = 13
MAX_OPSET = 26
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_to_onnx(
    model: nn.Module,
    example: np.ndarray,
    out_path: str | Path,
    spec: ModelSpec,
) -> dict:
    """Export `model` with the TorchScript exporter, a dynamic batch axis and `spec.opset`.

    The file is checked with onnx's full checker, run once with ONNX Runtime against PyTorch
    on `example`, and moved into place only when all of that passed.

    Returns:
        The export record: exporter, opset, IR version, node count, op types, warnings,
        seconds and the max abs difference to PyTorch on the example.

    Raises:
        StudyError: When the export or the check fails; the message names the cause.
    """
    if spec.opset > MAX_OPSET:
        raise StudyError(
            spec.name,
            "fp32",
            f"opset {spec.opset} is newer than the pinned onnxruntime loads ({MAX_OPSET})",
            f"set `opset:` to {MAX_OPSET} or lower for this model",
        )
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".partial")
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                model.eval(),
                (torch.from_numpy(example),),
                str(tmp),
                dynamo=False,
                opset_version=spec.opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        except Exception as error:
            tmp.unlink(missing_ok=True)
            raise StudyError(
                spec.name,
                "fp32",
                f"torch.onnx.export failed: {str(error).splitlines()[0]}",
                "try another `opset:` for this model, or simplify the failing operator",
            ) from error
    seconds = time.perf_counter() - started

    proto = onnx.load(str(tmp))
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
        onnx.save(proto, str(tmp))
    onnx.checker.check_model(str(tmp), full_check=True)
    max_abs = float(np.abs(run_onnx(tmp, example) - run_torch(model, example)).max())
    tmp.replace(out_path)

    ops = Counter(node.op_type for node in proto.graph.node)
    record = {
        "exporter": "torchscript",
        "opset": spec.opset,
        "ir_version": proto.ir_version,
        "nodes": len(proto.graph.node),
        "op_types": dict(sorted(ops.items())),
        "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
        "seconds": round(seconds, 3),
        "size_bytes": out_path.stat().st_size,
        "example_max_abs_err": max_abs,
    }
    log.info(
        "exported %s: %d nodes, %.1f KB, %.2f s, max abs diff %.2e",
        spec.name,
        record["nodes"],
        record["size_bytes"] / 1024,
        seconds,
        max_abs,
    )
    return record


def write_reference_test_data(model: nn.Module, example: np.ndarray, directory: str | Path) -> None:
    """Write `test_data_set_0` beside the export: the example and PyTorch's output on it."""
    write_test_data_set(directory, {INPUT_NAME: example}, {OUTPUT_NAME: run_torch(model, example)})
