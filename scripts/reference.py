"""Run the PyTorch model on the evaluation samples: the reference every variant must match."""

import os

import numpy as np
import torch

from onnxstudy.config import resolve_model
from onnxstudy.data import Samples
from onnxstudy.fidelity import top1_accuracy
from onnxstudy.jobs import job_log, write_json
from onnxstudy.sources import load_model, run_torch

with job_log(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    samples = Samples.load(snakemake.input.samples)
    model = load_model(spec, snakemake.input.weights)
    outputs = run_torch(model, samples.evaluation_x)
    log.info("reference outputs %s, mean |output| %.4f", outputs.shape, np.abs(outputs).mean())

    tmp = snakemake.output.reference + ".partial.npz"
    np.savez_compressed(tmp, output=outputs)
    os.replace(tmp, snakemake.output.reference)
    write_json(snakemake.output.accuracy, top1_accuracy(outputs, samples.evaluation_y))
