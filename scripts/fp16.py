"""Convert the fp32 model to fp16 (inputs and outputs stay float32)."""

from onnxstudy.jobs import job_log, write_json
from onnxstudy.precision import convert_to_fp16

with job_log(snakemake.log[0]):
    record = convert_to_fp16(snakemake.input.onnx, snakemake.output.onnx, snakemake.wildcards.model)
    write_json(snakemake.output.record, record)
