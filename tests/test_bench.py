"""onnxstudy.bench and runtime: statistics, paired timing, providers really used."""

from __future__ import annotations

import time

import numpy as np
import pytest

from onnxstudy.bench import (
    LatencyStats,
    batch_of,
    benchmark_cell,
    environment,
    measure_paired,
    ratio_of_medians_interval,
)
from onnxstudy.errors import ProviderUnavailable
from onnxstudy.runtime import open_session


def test_latency_stats_from_known_times():
    stats = LatencyStats.from_times([1.0, 2.0, 3.0, 4.0, 10.0], batch=4)
    assert stats.p50_ms == 3.0 and stats.min_ms == 1.0 and stats.mean_ms == 4.0
    assert stats.throughput_per_s == pytest.approx(1000.0)
    assert stats.p99_ms == pytest.approx(9.76)


def test_ratio_interval_separates_a_real_difference_from_noise():
    rng = np.random.default_rng(0)
    slow = rng.normal(10.0, 0.5, 200)
    fast = rng.normal(5.0, 0.25, 200)
    ratio, low, high = ratio_of_medians_interval(slow, fast)
    assert 1.9 < low <= ratio <= high < 2.1
    same = rng.normal(10.0, 0.5, 200)
    _, low, high = ratio_of_medians_interval(slow, same)
    assert low < 1.0 < high


def test_paired_measurement_alternates_and_times_both():
    calls = []

    def fast():
        calls.append("fast")

    def slow():
        calls.append("slow")
        time.sleep(0.002)

    fast_ms, slow_ms = measure_paired(fast, slow, warmup=1, runs=6)
    assert len(fast_ms) == len(slow_ms) == 6
    assert calls[2:6] == ["fast", "slow", "slow", "fast"]
    assert min(slow_ms) > max(fast_ms)


def test_batch_of_repeats_samples_when_short():
    samples = np.arange(6, dtype=np.float32).reshape(3, 2)
    batch = batch_of(samples, 5)
    assert batch.shape == (5, 2) and batch.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(batch[3], samples[0])


def test_environment_names_cpu_and_versions():
    env = environment(threads=2)
    assert env["threads"] == 2 and env["cores"] >= 1
    assert env["cpu"] and "onnx_version" in env


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_a_gpu_provider_without_a_gpu_is_refused_not_faked(tmp_path, provider):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU: the provider may really run")
    model = torch.nn.Linear(4, 2)
    torch.onnx.export(model, (torch.zeros(1, 4),), tmp_path / "m.onnx", dynamo=False)
    with pytest.raises(ProviderUnavailable):
        open_session(tmp_path / "m.onnx", provider)
    assert open_session(tmp_path / "m.onnx", "cpu").provider_used == "cpu"


def test_a_cuda_cell_on_a_host_without_cuda_comes_out_skipped(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    torch.onnx.export(model, (torch.zeros(1, 4),), tmp_path / "m.onnx", dynamo=False)
    inputs = np.ones((1, 4), dtype=np.float32)
    cell = {"model": "m", "variant": "fp32", "provider": "cuda", "batch": 1}
    row = benchmark_cell(cell, tmp_path / "m.onnx", model, inputs, warmup=1, runs=3, threads=1)
    assert row["status"] == "skipped" and "CUDA" in row["reason"]
    assert row["provider_used"] == "" and "p50_ms" not in row

    torch_cell = {**cell, "variant": "torch"}
    row = benchmark_cell(torch_cell, None, model, inputs, warmup=1, runs=3, threads=1)
    assert row["status"] == "skipped" and "no CUDA device" in row["reason"]

    cpu_cell = {**cell, "provider": "cpu"}
    row = benchmark_cell(cpu_cell, tmp_path / "m.onnx", model, inputs, warmup=1, runs=4, threads=1)
    assert row["status"] == "ok" and row["provider_used"] == "cpu"
    assert row["wins_vs_torch"].endswith("/4") and row["p50_ms"] > 0
