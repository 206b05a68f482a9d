"""Quantize a sentence encoder dynamically with 8-bit weights in blocks (MatMulNBits)."""

from onnxstudy.jobs import job_log, write_json
from onnxstudy.text import quantize_text_model_int8

with job_log(snakemake.log[0]):
    record = quantize_text_model_int8(
        snakemake.input.onnx,
        snakemake.output.onnx,
        snakemake.wildcards.model,
        recipe="block",
        variant="int8dyn_block",
    )
    write_json(snakemake.output.record, record)
