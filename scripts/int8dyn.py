"""Quantize the fp32 model's weights to int8 dynamically (activations at run time)."""

from onnxstudy.jobs import job_log, write_json
from onnxstudy.precision import quantize_int8_dynamic

with job_log(snakemake.log[0]):
    record = quantize_int8_dynamic(
        snakemake.input.onnx,
        snakemake.output.onnx,
        snakemake.params.settings["int8dyn"],
        snakemake.wildcards.model,
    )
    write_json(snakemake.output.record, record)
