"""Export the PyTorch model to fp32 ONNX, check it on inputs unlike the export example, and
write a Model Zoo test data set beside it."""

import torch

from onnxstudy.config import resolve_model
from onnxstudy.data import Samples
from onnxstudy.export import export_and_verify
from onnxstudy.jobs import job_log, write_json
from onnxstudy.sources import load_model

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    record = export_and_verify(
        load_model(spec, snakemake.input.weights),
        spec,
        Samples.load(snakemake.input.samples).evaluation_x,
        snakemake.output.onnx,
        snakemake.output.test_data,
    )
    write_json(snakemake.output.record, record)
