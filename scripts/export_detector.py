"""Export a torchvision detector to fp32 ONNX with dynamic image height and width, check it on
other images, and write a Model Zoo test data set beside it."""

import torch

from onnxstudy.config import resolve_model
from onnxstudy.detection import export_and_verify_detector
from onnxstudy.jobs import job_log, write_json
from onnxstudy.sources import load_model

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    record = export_and_verify_detector(
        load_model(spec, snakemake.input.weights),
        spec,
        snakemake.output.onnx,
        snakemake.output.test_data,
    )
    write_json(snakemake.output.record, record)
