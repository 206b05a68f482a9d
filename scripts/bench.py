"""Time one cell (model, variant, provider, batch); ONNX variants are paired with PyTorch,
except those of Model Zoo models, which have no PyTorch form. A sentence encoder's cell is
timed at each sequence length, one row per length (column seq_len)."""

import pandas as pd

from onnxstudy.bench import batch_of, benchmark_cell
from onnxstudy.config import resolve_model
from onnxstudy.data import Samples
from onnxstudy.jobs import job_log
from onnxstudy.report import write_csv_atomically
from onnxstudy.sources import load_model
from onnxstudy.text import benchmark_text_cells, load_text_model

with job_log(snakemake.log[0]):
    wildcards = snakemake.wildcards
    spec = resolve_model(snakemake.config, wildcards.model)
    batch = int(wildcards.batch)
    cell = {
        "model": wildcards.model,
        "variant": wildcards.variant,
        "provider": wildcards.provider,
        "batch": batch,
    }
    evaluation = Samples.load(snakemake.input.samples).evaluation_x
    # A detector's graph takes one image [3, H, W]: its one cell (batch 1) times the first.
    inputs = evaluation[0] if spec.task == "detection" else batch_of(evaluation, batch)
    weights = snakemake.input.get("weights")  # Model Zoo models have none
    if spec.task == "embedding":
        rows = benchmark_text_cells(
            cell,
            snakemake.input.get("onnx"),
            load_text_model(spec.source, spec.name, weights),
            snakemake.params.sequence_lengths,
            snakemake.params.warmup,
            snakemake.params.runs,
            snakemake.threads,
        )
    else:
        rows = [
            benchmark_cell(
                cell,
                snakemake.input.get("onnx"),
                load_model(spec, weights) if weights else None,
                inputs,
                snakemake.params.warmup,
                snakemake.params.runs,
                snakemake.threads,
            )
        ]
    write_csv_atomically(pd.DataFrame(rows), snakemake.output.csv)
