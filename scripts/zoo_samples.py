"""Gather a Model Zoo model's samples from its tests' inputs (one array per graph input)."""

from onnxstudy.config import resolve_model
from onnxstudy.jobs import job_log
from onnxstudy.sources import zoo_samples

with job_log(snakemake.log[0]):
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    zoo_samples(snakemake.input.model, spec).save(snakemake.output.samples)
