"""ONNX Runtime sessions on the provider really asked for, and a check of the one really used.

onnxruntime-gpu lists CUDA and TensorRT as available on hosts without a GPU and then runs on
the CPU without an exception; `open_session` reads `session.get_providers()` and raises
ProviderUnavailable instead of letting a CPU figure pass as a GPU one.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxstudy.errors import ProviderUnavailable

log = logging.getLogger(__name__)

# onnxruntime-gpu 1.31 loads models of IR version 13 at most (onnx 1.23 writes 14 by default).
MAX_IR_VERSION = 13
NOT_LOADABLE = "not_loadable"
NOT_IMPLEMENTED = "not_implemented"
RUN_FAILED = "run_failed"
# Messages of failures that mean "no kernel for this operator or element type": the error types
# differ (NOT_IMPLEMENTED status, FAIL on an unregistered op, RuntimeError in the Python binding).
_MISSING_KERNEL_MESSAGES = (
    "is not a registered function/op",
    "can't be converted to MLDataType",
)
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
# The C++ source location and function signature ONNX Runtime puts before its own message.
_ORT_SOURCE = re.compile(r"/onnxruntime_src/\S+:\d+ (?:[^\s(]+ )?[^\s(]+\([^)]*\)\s*")

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclass
class OpenedSession:
    """A session with the facts a benchmark must record.

    Attributes:
        session: The ONNX Runtime inference session.
        provider_used: Short name (cpu, cuda, tensorrt) of the first provider the session runs.
        create_ms: Time to create the session, in milliseconds.
        threads: intra-op threads given to the session (0 means ONNX Runtime's default).
    """

    session: ort.InferenceSession
    provider_used: str
    create_ms: float
    threads: int

    def feeds(self, inputs: np.ndarray | dict[str, Any]) -> dict[str, Any]:
        """The session's feed: a dict of input name to value as is, or one array under the
        name of the first input."""
        if isinstance(inputs, dict):
            return inputs
        return {self.session.get_inputs()[0].name: inputs}

    def run(self, inputs: np.ndarray | dict[str, Any]) -> list[Any]:
        """Every output, in graph order, for one array (first input) or a dict of inputs."""
        return self.session.run(None, self.feeds(inputs))

    def run_named(self, inputs: np.ndarray | dict[str, Any]) -> dict[str, Any]:
        """Like `run`, keyed by output name."""
        names = [output.name for output in self.session.get_outputs()]
        return dict(zip(names, self.run(inputs), strict=True))


def short_provider(ort_name: str) -> str:
    """Map an ONNX Runtime provider name to its short config name."""
    for short, full in PROVIDERS.items():
        if full == ort_name:
            return short
    return ort_name


def session_options(threads: int = 0) -> ort.SessionOptions:
    """Session options for fair timing: spinning off, full graph optimisation, 1 inter-op thread.

    Args:
        threads: intra-op threads; 0 lets ONNX Runtime choose. Defaults to 0.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # A spinning pool keeps cores busy after run() returns and slows whatever is timed next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def open_session(path: str | Path, provider: str = "cpu", threads: int = 0) -> OpenedSession:
    """Open `path` on `provider` (cpu, cuda or tensorrt) and check that provider really runs.

    Raises:
        ProviderUnavailable: When the provider is unknown, not built into this onnxruntime,
            or silently replaced by the CPU provider (no GPU, missing CUDA libraries).
    """
    if provider not in PROVIDERS:
        raise ProviderUnavailable(f"provider '{provider}' is unknown; use {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[provider]
    if wanted not in ort.get_available_providers():
        raise ProviderUnavailable(f"this onnxruntime build has no {wanted}")

    providers = [wanted] if provider == "cpu" else [wanted, "CPUExecutionProvider"]
    started = time.perf_counter()
    session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
    create_ms = (time.perf_counter() - started) * 1000
    used = session.get_providers()[0]
    if used != wanted:
        raise ProviderUnavailable(
            f"{wanted} was requested but the session runs on {used} "
            "(no usable GPU, or its CUDA/cuDNN libraries are missing)"
        )
    return OpenedSession(session, short_provider(used), create_ms, threads)


def run_onnx(path: str | Path, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run the first output of the model at `path` on `inputs` in batches, on the CPU."""
    opened = open_session(path, "cpu")
    outputs = [
        opened.run(inputs[start : start + batch_size])[0]
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(outputs).astype(np.float32)


def classify_failure(error: Exception, stage: str) -> str:
    """Name the kind of an ONNX Runtime failure, for reports that must not lump them together.

    Args:
        error: What session creation or `run` raised.
        stage: `load` (session creation) or `run`.

    Returns:
        `not_implemented` when the runtime has no kernel for an operator or element type;
        otherwise `not_loadable` for a `load` failure (IR version or opset too new, invalid
        graph, failed initialisation) and `run_failed` for a `run` failure.
    """
    from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as NoKernel

    message = str(error)
    if isinstance(error, NoKernel) or any(text in message for text in _MISSING_KERNEL_MESSAGES):
        return NOT_IMPLEMENTED
    return NOT_LOADABLE if stage == "load" else RUN_FAILED


def first_line(error: Exception) -> str:
    """The first line of an error message, without ONNX Runtime's `[ONNXRuntimeError] : N :`
    prefix and C++ source locations, for one-line reasons in records and reports."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return _ORT_SOURCE.sub("", _ORT_PREFIX.sub("", lines[0]))
