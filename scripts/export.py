"""Export the PyTorch model to fp32 ONNX with a Model Zoo test data set beside it."""

import torch

from onnxstudy.config import resolve_model
from onnxstudy.data import Samples
from onnxstudy.export import export_to_onnx, write_reference_test_data
from onnxstudy.jobs import job_log, write_json
from onnxstudy.sources import load_model

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    example = Samples.load(snakemake.input.samples).evaluation_x[:2]
    model = load_model(spec, snakemake.input.weights)
    record = export_to_onnx(model, example, snakemake.output.onnx, spec)
    write_reference_test_data(model, example, snakemake.output.test_data)
    write_json(snakemake.output.record, record)
