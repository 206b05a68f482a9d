"""Parity of one variant against the PyTorch reference, and its accuracy."""

import numpy as np

from onnxstudy.data import Samples
from onnxstudy.fidelity import compare_outputs, top1_accuracy
from onnxstudy.jobs import job_log, write_json
from onnxstudy.runtime import run_onnx

with job_log(snakemake.log[0]) as log:
    samples = Samples.load(snakemake.input.samples)
    with np.load(snakemake.input.reference) as npz:
        reference = npz["output"]
    outputs = run_onnx(snakemake.input.onnx, samples.evaluation_x)

    parity = compare_outputs(outputs, reference, snakemake.params.tolerance)
    log.info(
        "parity %s: max abs err %.3g, min cosine %.6f, top-1 agreement %.3f",
        parity.verdict,
        parity.max_abs_err,
        parity.cosine_min,
        parity.top1_agreement,
    )
    write_json(snakemake.output.parity, {"reference": "pytorch", **parity.to_dict()})
    write_json(snakemake.output.accuracy, top1_accuracy(outputs, samples.evaluation_y))
