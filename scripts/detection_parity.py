"""Detection parity of one variant against PyTorch: boxes matched by IoU, one verdict per
image size (the export size and the configured others)."""

import torch

from onnxstudy.config import resolve_model
from onnxstudy.detection import compare_detections, detection_accuracy
from onnxstudy.jobs import job_log, write_json
from onnxstudy.sources import load_model

with job_log(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    parity = compare_detections(
        load_model(spec, snakemake.input.weights),
        snakemake.input.onnx,
        export_size=tuple(spec.input_shape[-2:]),
        sizes=spec.sizes,
    )
    for size in parity["sizes"]:
        log.info("%dx%d: %s", size["height"], size["width"], size["verdict"])
    write_json(snakemake.output.parity, {"reference": "pytorch", "method": "ort-cpu", **parity})
    write_json(snakemake.output.accuracy, detection_accuracy(parity["sizes"][0]["images"]))
