"""Draw a model's training, calibration and evaluation samples."""

from onnxstudy.config import resolve_model
from onnxstudy.jobs import job_log
from onnxstudy.sources import draw_samples

with job_log(snakemake.log[0]):
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    draw_samples(spec).save(snakemake.output.samples)
