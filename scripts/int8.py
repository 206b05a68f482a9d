"""Quantize the fp32 model to int8 statically with one recipe, calibrated on real samples."""

from onnxstudy.data import Samples
from onnxstudy.jobs import job_log, write_json
from onnxstudy.precision import quantize_int8_static

with job_log(snakemake.log[0]):
    record = quantize_int8_static(
        snakemake.input.onnx,
        snakemake.output.onnx,
        Samples.load(snakemake.input.samples).calibration_x,
        snakemake.params.recipe,
        snakemake.wildcards.model,
        snakemake.wildcards.int8_variant,
    )
    write_json(snakemake.output.record, record)
