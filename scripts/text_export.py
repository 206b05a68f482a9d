"""Export a sentence encoder to fp32 ONNX with dynamic batch and sequence axes, check it at
other shapes, and write a Model Zoo test data set beside it."""

import torch

from onnxstudy.config import resolve_model
from onnxstudy.jobs import job_log, write_json
from onnxstudy.text import export_and_verify_text, load_text_model

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    record = export_and_verify_text(
        load_text_model(spec.source, spec.name, snakemake.input.weights),
        snakemake.output.onnx,
        snakemake.output.test_data,
        spec.opset,
    )
    write_json(snakemake.output.record, record)
