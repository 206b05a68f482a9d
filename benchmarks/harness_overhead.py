"""How much the study's timing harness adds to a bare loop of `session.run`.

Times the same ONNX model, in alternating blocks, once through `benchmark_cell` (the code
behind every benchmark CSV) and once as a bare loop of `session.run` timed with
`time.perf_counter`, then prints both p50 figures and their difference. Target: under 3%.

    python benchmarks/harness_overhead.py [--model FILE.onnx] [--blocks 6] [--runs 100]

Without --model it exports a seeded torchvision mobilenet_v2 to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from onnxstudy.bench import benchmark_cell
from onnxstudy.config import resolve_model
from onnxstudy.data import photo_crops
from onnxstudy.export import export_to_onnx
from onnxstudy.runtime import open_session
from onnxstudy.sources import build_model


def export_mobilenet(folder: Path) -> tuple[Path, np.ndarray]:
    spec = resolve_model({"models": {"m": {"source": "torchvision:mobilenet_v2"}}}, "m")
    inputs = photo_crops(1, (224, 224), seed=0)
    path = folder / "mobilenet_v2.onnx"
    export_to_onnx(build_model(spec), inputs, path, spec)
    return path, inputs


def bare_loop(path: Path, inputs: np.ndarray, warmup: int, runs: int, threads: int) -> list:
    session = open_session(path, "cpu", threads).session
    feed = {session.get_inputs()[0].name: inputs}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="an ONNX file with one float input")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        if args.model:
            path = args.model
            shape = [
                d if isinstance(d, int) else 1
                for d in open_session(path).session.get_inputs()[0].shape
            ]
            inputs = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        else:
            path, inputs = export_mobilenet(Path(scratch))

        cell = {"model": path.stem, "variant": "fp32", "provider": "cpu", "batch": len(inputs)}
        harness, bare = [], []
        for _ in range(args.blocks):
            row = benchmark_cell(cell, path, None, inputs, 10, args.runs, args.threads)
            harness.append(row["p50_ms"])
            bare.append(float(np.median(bare_loop(path, inputs, 10, args.runs, args.threads))))

    harness_p50, bare_p50 = float(np.median(harness)), float(np.median(bare))
    print(f"model: {path.name}, threads {args.threads}, {args.blocks} blocks x {args.runs} runs")
    print(f"bare session.run loop  p50 {bare_p50:.4f} ms  (blocks: {np.round(bare, 4)})")
    print(f"study harness          p50 {harness_p50:.4f} ms  (blocks: {np.round(harness, 4)})")
    print(f"harness overhead at p50: {100 * (harness_p50 / bare_p50 - 1):+.2f}% (target < 3%)")


if __name__ == "__main__":
    main()
