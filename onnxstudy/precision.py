"""fp16 conversion (onnxconverter-common) and static int8 quantization (onnxruntime)."""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from onnxstudy.errors import StudyError
from onnxstudy.runtime import open_session

log = logging.getLogger(__name__)

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
QUANT_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
QUANT_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
DEFAULT_INT8_RECIPE: dict[str, Any] = {
    "method": "minmax",
    "format": "qdq",
    "per_channel": True,
    "reduce_range": False,
    "activation_type": "uint8",
    "weight_type": "int8",
}
MAX_IR_VERSION = 13


def _save_loadable(model: onnx.ModelProto, path: Path) -> None:
    """Save `model` with an IR version the pinned runtime loads, atomically."""
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    tmp = path.with_name(path.name + ".partial")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def convert_to_fp16(src: str | Path, dst: str | Path, model_name: str) -> dict:
    """Convert the fp32 model at `src` to fp16 with float32 inputs and outputs kept.

    Returns:
        A record with the seconds taken, the converter's warnings and the size in bytes.

    Raises:
        StudyError: When the converted model does not load in ONNX Runtime.
    """
    from onnxconverter_common import float16

    dst = Path(dst)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    _save_loadable(converted, dst)
    try:
        open_session(dst, "cpu")
    except Exception as error:
        dst.unlink(missing_ok=True)
        raise StudyError(
            model_name,
            "fp16",
            f"the fp16 model does not load in ONNX Runtime: {str(error).splitlines()[0]}",
            "remove fp16 from this model's `variants:`",
        ) from error
    record = {
        "seconds": round(time.perf_counter() - started, 3),
        "warnings": sorted({str(w.message).splitlines()[0] for w in caught}),
        "size_bytes": dst.stat().st_size,
    }
    log.info("fp16: %.1f KB in %.2f s", record["size_bytes"] / 1024, record["seconds"])
    return record


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds calibration samples one at a time under the model's input name."""

    def __init__(self, input_name: str, samples: np.ndarray) -> None:
        self.input_name = input_name
        self.samples = samples
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.samples):
            return None
        sample = self.samples[self.position : self.position + 1]
        self.position += 1
        return {self.input_name: sample}

    def rewind(self) -> None:
        self.position = 0


def check_int8_recipe(recipe: dict[str, Any], model_name: str) -> dict[str, Any]:
    """Return the recipe merged over the defaults, or raise on an unknown choice."""
    merged = {**DEFAULT_INT8_RECIPE, **recipe}
    choices = {
        "method": CALIBRATION_METHODS,
        "format": QUANT_FORMATS,
        "activation_type": QUANT_TYPES,
        "weight_type": QUANT_TYPES,
    }
    for key, allowed in choices.items():
        if merged[key] not in allowed:
            raise StudyError(
                model_name,
                "int8",
                f"int8 {key} '{merged[key]}' is unknown",
                f"use one of {', '.join(allowed)}",
            )
    return merged


def quantize_int8_static(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    recipe: dict[str, Any],
    model_name: str,
) -> dict:
    """Quantize `src` statically, calibrated on `calibration`, and write `dst`.

    `quant_pre_process` (shape inference and graph optimisation) runs first; when it fails the
    model is quantized without it and the record says so.

    Args:
        src: The fp32 model.
        dst: Where the int8 model goes.
        calibration: Calibration inputs, batch axis first.
        recipe: Overrides of DEFAULT_INT8_RECIPE (method, format, per_channel, reduce_range,
            activation_type, weight_type).
        model_name: For error messages.

    Returns:
        A record with the recipe, whether pre-processing ran, seconds and size in bytes.
    """
    recipe = check_int8_recipe(recipe, model_name)
    dst = Path(dst)
    started = time.perf_counter()
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
            preprocessed = True
        except Exception as error:
            log.warning("quant_pre_process failed (%s); quantizing without it", error)
            prepared = Path(src)
            preprocessed = False
        tmp = dst.with_name(dst.name + ".partial")
        quantize_static(
            str(prepared),
            str(tmp),
            ArrayCalibrationReader(input_name, calibration),
            quant_format=QUANT_FORMATS[recipe["format"]],
            per_channel=bool(recipe["per_channel"]),
            reduce_range=bool(recipe["reduce_range"]),
            activation_type=QUANT_TYPES[recipe["activation_type"]],
            weight_type=QUANT_TYPES[recipe["weight_type"]],
            calibrate_method=CALIBRATION_METHODS[recipe["method"]],
        )
        _save_loadable(onnx.load(str(tmp)), dst)
        tmp.unlink(missing_ok=True)

    record = {
        "recipe": recipe,
        "preprocessed": preprocessed,
        "calibration_samples": len(calibration),
        "seconds": round(time.perf_counter() - started, 3),
        "size_bytes": dst.stat().st_size,
    }
    log.info(
        "int8 (%s, %s): %.1f KB in %.2f s",
        recipe["method"],
        recipe["format"],
        record["size_bytes"] / 1024,
        record["seconds"],
    )
    return record
