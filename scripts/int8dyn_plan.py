"""Decide from the fp32 graph whether dynamic int8 is built for this model, or skipped."""

from onnxstudy.jobs import job_log, write_json
from onnxstudy.precision import plan_int8_dynamic

with job_log(snakemake.log[0]):
    plan = plan_int8_dynamic(
        snakemake.input.onnx, snakemake.params.settings["int8dyn"], snakemake.wildcards.model
    )
    write_json(snakemake.output.plan, plan)
