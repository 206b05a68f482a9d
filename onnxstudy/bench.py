"""Latency of one cell (model, variant, provider, batch), paired against PyTorch.

Every ONNX variant alternates call by call with the PyTorch model on the same input, so both
see the same machine state; `wins_vs_torch` counts the pairs the variant was faster, and a
bootstrap interval of the ratio of medians says whether the difference is beyond noise.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from onnxstudy.data import Inputs
from onnxstudy.errors import ProviderUnavailable
from onnxstudy.runtime import open_session

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("torch", "onnx", "onnxruntime-gpu", "onnxruntime", "onnxconverter-common")
BOOTSTRAP_RESAMPLES = 2000


@dataclass
class LatencyStats:
    """Latency of one timed call, in milliseconds, after warm-up; throughput in samples/s."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    throughput_per_s: float
    runs: int

    @classmethod
    def from_times(cls, times_ms: list[float] | np.ndarray, batch: int) -> LatencyStats:
        times = np.asarray(times_ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(times, [50, 90, 99])
        mean = float(times.mean())
        return cls(
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            mean_ms=mean,
            std_ms=float(times.std()),
            min_ms=float(times.min()),
            throughput_per_s=batch * 1000.0 / mean,
            runs=len(times),
        )


def time_call(fn: Callable[[], object]) -> float:
    """Milliseconds one call of `fn` takes (it must block until its result is ready)."""
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000.0


def measure_latency(fn: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Call `fn` `warmup` times untimed, then return the milliseconds of `runs` timed calls."""
    for _ in range(warmup):
        fn()
    return [time_call(fn) for _ in range(runs)]


def measure_paired(
    first: Callable[[], object],
    second: Callable[[], object],
    warmup: int,
    runs: int,
    settle_s: float = 0.002,
) -> tuple[list[float], list[float]]:
    """Alternate `first` and `second`, call by call, after warm-up of both.

    The order inside each pair flips every run, so neither side always runs on a cache
    the other has just warmed. Before each timed call the harness sleeps `settle_s` seconds
    (untimed; defaults to 2 ms), long enough for PyTorch's OpenMP threads, which spin for a
    while after a call, to go idle instead of taking cores from the other side's call.
    """
    for _ in range(warmup):
        first()
        second()

    def settled(fn: Callable[[], object]) -> float:
        time.sleep(settle_s)
        return time_call(fn)

    times_first, times_second = [], []
    for index in range(runs):
        if index % 2 == 0:
            times_first.append(settled(first))
            times_second.append(settled(second))
        else:
            times_second.append(settled(second))
            times_first.append(settled(first))
    return times_first, times_second


def ratio_of_medians_interval(
    baseline_ms: list[float], candidate_ms: list[float], seed: int = 0
) -> tuple[float, float, float]:
    """Speed-up baseline/candidate of medians and its 95% bootstrap interval over pairs.

    Returns:
        (ratio, low, high); ratio > 1 means the candidate is faster.
    """
    base = np.asarray(baseline_ms)
    cand = np.asarray(candidate_ms)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(base), size=(BOOTSTRAP_RESAMPLES, len(base)))
    ratios = np.median(base[index], axis=1) / np.median(cand[index], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(np.median(base) / np.median(cand)), float(low), float(high)


def cpu_description() -> dict[str, str]:
    """CPU model name and the SIMD flags that matter for int8 (avx2, avx512f, avx512_vnni)."""
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return {"cpu": model, "cpu_flags": " ".join(f for f in wanted if f in flags)}


def gpu_description() -> str:
    """Name and driver of the first CUDA GPU as PyTorch sees it, or an empty string."""
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return f"{props.name} (CUDA {torch.version.cuda})"
    except Exception:  # a broken CUDA install must not stop a CPU benchmark
        pass
    return ""


def environment(threads: int) -> dict[str, str | int]:
    """The machine and library versions a latency figure depends on."""
    env: dict[str, str | int] = {
        **cpu_description(),
        "cores": os.cpu_count() or 0,
        "threads": threads,
        "gpu": gpu_description(),
        "python": platform.python_version(),
    }
    for package in VERSIONED_PACKAGES:
        try:
            env[f"{package}_version"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return env


def batch_of(samples: Inputs, batch: int) -> Inputs:
    """The first `batch` samples, repeated when there are fewer; for a dict of named inputs,
    the same rows of each."""
    if isinstance(samples, dict):
        return {name: batch_of(array, batch) for name, array in samples.items()}
    reps = -(-batch // len(samples))
    return np.ascontiguousarray(np.concatenate([samples] * reps)[:batch])


def fixed_batch_conflict(session, inputs: dict[str, np.ndarray]) -> str:
    """Why `inputs` cannot be fed to `session` as a batch, or an empty string: Model Zoo graphs
    often fix axis 0 (to 1), and such a model cannot be timed at another batch size."""
    for arg in session.get_inputs():
        first = arg.shape[0] if arg.shape else None
        given = inputs[arg.name].shape[0] if inputs[arg.name].ndim else None
        if isinstance(first, int) and given is not None and first != given:
            return f"input '{arg.name}' has a fixed batch axis of {first}; batch {given} cannot run"
    return ""


def torch_runner(model, inputs: Inputs, provider: str) -> Callable[[], object]:
    """A blocking call of `model` on `inputs` under inference mode, on CPU or CUDA; a dict of
    named inputs is passed as keyword arguments (Hugging Face encoders)."""
    import torch

    if provider == "cpu":
        call = bound_call(model, inputs, "cpu")

        def run_cpu():
            with torch.inference_mode():
                return call()

        return run_cpu
    if not torch.cuda.is_available():
        raise ProviderUnavailable("PyTorch sees no CUDA device on this host")
    call = bound_call(model.to("cuda"), inputs, "cuda")

    def run_cuda():
        with torch.inference_mode():
            out = call()
        torch.cuda.synchronize()
        return out

    return run_cuda


def bound_call(model, inputs: Inputs, device: str) -> Callable[[], object]:
    """`model` called on `inputs` copied to `device` once: one tensor, or keyword tensors."""
    import torch

    if isinstance(inputs, dict):
        tensors = {name: torch.from_numpy(array).to(device) for name, array in inputs.items()}
        return lambda: model(**tensors)
    tensor = torch.from_numpy(inputs).to(device)
    return lambda: model(tensor)


def onnx_runner(path: str | Path, inputs: Inputs, provider: str, threads: int):
    """Open a session on `provider` and return (blocking call, opened session).

    `inputs` is one array (fed to the first graph input) or a dict of input name to array.
    On GPU providers, IO binding keeps the inputs and outputs on the device, so host copies
    are not timed.
    """
    import onnxruntime as ort

    opened = open_session(path, provider, threads)
    session = opened.session
    feeds = opened.feeds(inputs)
    if provider == "cpu":
        return (lambda: session.run(None, feeds)), opened
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda")

    def run_bound():
        session.run_with_iobinding(binding)

    return run_bound, opened


def skipped(row: dict, reason: str, provider_used: str) -> dict:
    """`row` marked `skipped` with `reason`, logged as a warning."""
    row.update(status="skipped", reason=reason, provider_used=provider_used)
    log.warning("%s %s b%s: skipped, %s", row["variant"], row["provider"], row["batch"], reason)
    return row


def benchmark_cell(
    cell: dict,
    onnx_path: str | Path | None,
    torch_model,
    inputs: Inputs,
    warmup: int,
    runs: int,
    threads: int,
) -> dict:
    """Time one cell and return its row for the benchmark CSV.

    Args:
        cell: model, variant, provider and batch of the cell.
        onnx_path: The variant's file, or None for the PyTorch baseline (variant `torch`).
        torch_model: The PyTorch model, or None when there is none (zoo models).
        inputs: The batch to time on: one array, or a dict of input name to array.
        warmup: Untimed calls before timing.
        runs: Timed calls (pairs, when paired with PyTorch).
        threads: Threads for ONNX Runtime's intra-op pool and for PyTorch.

    Returns:
        The row: status `ok` with the statistics, or `skipped` with the reason when the
        provider cannot run here or the model's fixed batch axis does not take the batch.
    """
    row: dict = {**cell, "status": "ok", "reason": "", "warmup": warmup}
    row.update(environment(threads))
    if torch_model is not None:
        import torch

        torch.set_num_threads(max(threads, 1))
    try:
        torch_call = (
            torch_runner(torch_model, inputs, cell["provider"]) if torch_model is not None else None
        )
        if onnx_path is None:
            times = measure_latency(torch_call, warmup, runs)
            row["provider_used"] = cell["provider"]
            row.update(asdict(LatencyStats.from_times(times, cell["batch"])))
            return row
        onnx_call, opened = onnx_runner(onnx_path, inputs, cell["provider"], threads)
    except ProviderUnavailable as reason:
        return skipped(row, str(reason), "")
    conflict = fixed_batch_conflict(opened.session, opened.feeds(inputs))
    if conflict:
        return skipped(row, conflict, opened.provider_used)

    row["provider_used"] = opened.provider_used
    row["session_create_ms"] = round(opened.create_ms, 2)
    row["graph_optimization"] = "ORT_ENABLE_ALL"
    row["spinning"] = "off"
    if torch_call is None:
        times = measure_latency(onnx_call, warmup, runs)
    else:
        times, torch_times = measure_paired(onnx_call, torch_call, warmup, runs)
        wins = sum(o < t for o, t in zip(times, torch_times, strict=True))
        ratio, low, high = ratio_of_medians_interval(torch_times, times)
        row.update(
            wins_vs_torch=f"{wins}/{runs}",
            torch_paired_p50_ms=float(np.median(torch_times)),
            paired_speedup=ratio,
            paired_speedup_ci_low=low,
            paired_speedup_ci_high=high,
        )
    row.update(asdict(LatencyStats.from_times(times, cell["batch"])))
    log.info(
        "%s %s b%d: p50 %.3f ms%s",
        cell["variant"],
        row["provider_used"],
        cell["batch"],
        row["p50_ms"],
        f", beat PyTorch in {row['wins_vs_torch']} pairs" if "wins_vs_torch" in row else "",
    )
    return row
