"""Draw a model's training, calibration and evaluation samples."""

from onnxstudy.config import resolve_model
from onnxstudy.data import make_samples
from onnxstudy.jobs import job_log

with job_log(snakemake.log[0]):
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    samples = make_samples(
        spec.dataset,
        spec.input_shape,
        spec.calibration_samples,
        spec.evaluation_samples,
        spec.seed,
    )
    samples.save(snakemake.output.samples)
