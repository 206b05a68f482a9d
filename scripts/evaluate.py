"""Parity of one variant against the PyTorch reference, and its accuracy."""

import numpy as np

from onnxstudy.data import Samples
from onnxstudy.fidelity import (
    compare_outputs,
    top1_accuracy,
    true_fp16_parity,
    with_true_fp16_check,
)
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
    # ONNX Runtime's CPU provider computes most fp16 operators in fp32: fp16 is also checked
    # with true fp16 arithmetic on a few samples, and the record says how each figure was taken.
    record = {"reference": "pytorch", "method": "ort-cpu", **parity.to_dict()}
    if snakemake.params.true_fp16_samples != 0:
        true_fp16 = true_fp16_parity(
            snakemake.input.onnx,
            samples.evaluation_x,
            reference,
            snakemake.params.tolerance,
            snakemake.params.true_fp16_samples,
        )
        log.info("true fp16 arithmetic: %s", true_fp16)
        record = with_true_fp16_check(record, true_fp16)
    write_json(snakemake.output.parity, record)
    write_json(snakemake.output.accuracy, top1_accuracy(outputs, samples.evaluation_y))
