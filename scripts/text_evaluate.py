"""Parity of one variant of a sentence encoder against PyTorch (sentence embeddings), and its
accuracy (Spearman of pair similarities against fp32)."""

from onnxstudy.config import resolve_model
from onnxstudy.jobs import job_log, write_json
from onnxstudy.text import evaluate_text_variant, load_reference, load_text_tokenizer

with job_log(snakemake.log[0]) as log:
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    parity, accuracy = evaluate_text_variant(
        snakemake.input.onnx,
        load_text_tokenizer(spec.source, spec.name),
        load_reference(snakemake.input.reference),
        snakemake.params.tolerance,
    )
    log.info(
        "parity %s: min cosine %.6f (worst: %r), max abs err %.3g; spearman vs fp32 %.4f",
        parity["verdict"],
        parity["cosine_min"],
        parity["worst_sentence"],
        parity["max_abs_err"],
        accuracy["accuracy"],
    )
    write_json(snakemake.output.parity, parity)
    write_json(snakemake.output.accuracy, accuracy)
