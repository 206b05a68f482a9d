"""Quantize the fp32 model to int8, statically, calibrated on the model's calibration samples."""

from onnxstudy.data import Samples
from onnxstudy.jobs import job_log, write_json
from onnxstudy.precision import quantize_int8_static

with job_log(snakemake.log[0]):
    calibration = Samples.load(snakemake.input.samples).calibration_x
    record = quantize_int8_static(
        snakemake.input.onnx,
        snakemake.output.onnx,
        calibration,
        snakemake.params.recipe,
        snakemake.wildcards.model,
    )
    write_json(snakemake.output.record, record)
