"""Train a builtin model, or load / seed a torchvision model's weights."""

import torch

from onnxstudy.config import resolve_model
from onnxstudy.data import Samples
from onnxstudy.jobs import job_log, write_json
from onnxstudy.sources import prepare_weights

with job_log(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    samples = Samples.load(snakemake.input.samples)
    record = prepare_weights(spec, samples, snakemake.output.weights)
    write_json(snakemake.output.record, record)
