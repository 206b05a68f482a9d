"""Embed the shipped sentences and pairs with PyTorch (the reference) and the pairs with the
fp32 ONNX model (the accuracy baseline); score PyTorch's pair similarities against fp32's."""

import torch

from onnxstudy.config import resolve_model
from onnxstudy.jobs import job_log, write_json
from onnxstudy.text import (
    embed_reference,
    load_text_model,
    pair_accuracy,
    save_reference,
    study_sentences,
)

with job_log(snakemake.log[0]) as log:
    torch.set_num_threads(snakemake.threads)
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    reference = embed_reference(
        load_text_model(spec.source, spec.name, snakemake.input.weights),
        snakemake.input.fp32,
        study_sentences(spec.evaluation_samples),
    )
    save_reference(reference, snakemake.output.reference)
    accuracy = pair_accuracy(reference["pair_similarity"], reference["fp32_pair_similarity"])
    log.info(
        "%d sentences, %d pairs; PyTorch's pair similarities against fp32: spearman %.4f",
        len(reference["sentences"]),
        accuracy["samples"],
        accuracy["accuracy"],
    )
    write_json(snakemake.output.accuracy, accuracy)
