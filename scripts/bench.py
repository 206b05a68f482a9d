"""Time one cell (model, variant, provider, batch); ONNX variants are paired with PyTorch."""

import pandas as pd

from onnxstudy.bench import batch_of, benchmark_cell
from onnxstudy.config import resolve_model
from onnxstudy.data import Samples
from onnxstudy.jobs import job_log
from onnxstudy.report import write_csv_atomically
from onnxstudy.sources import load_model

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
    inputs = batch_of(Samples.load(snakemake.input.samples).evaluation_x, batch)
    row = benchmark_cell(
        cell,
        snakemake.input.get("onnx"),
        load_model(spec, snakemake.input.weights),
        inputs,
        snakemake.params.warmup,
        snakemake.params.runs,
        snakemake.threads,
    )
    write_csv_atomically(pd.DataFrame([row]), snakemake.output.csv)
