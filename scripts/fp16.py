"""Convert the fp32 model to fp16 (float32 inputs and outputs kept), repaired where it fails."""

from onnxstudy.data import Samples
from onnxstudy.jobs import job_log, write_json
from onnxstudy.precision import convert_to_fp16

with job_log(snakemake.log[0]):
    record = convert_to_fp16(
        snakemake.input.onnx,
        snakemake.output.onnx,
        Samples.load(snakemake.input.samples).calibration_x,
        snakemake.params.tolerance,
        snakemake.wildcards.model,
        snakemake.params.settings["fp16"],
    )
    write_json(snakemake.output.record, record)
