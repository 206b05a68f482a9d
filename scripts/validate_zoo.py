"""Check one variant of a Model Zoo model against the zoo's expected outputs, test by test."""

from onnxstudy.jobs import job_log, write_json
from onnxstudy.zoo import NO_LABELS, validate_variant

with job_log(snakemake.log[0]) as log:
    wildcards = snakemake.wildcards
    validation = validate_variant(
        snakemake.input.model,
        snakemake.input.onnx,
        snakemake.params.tolerance,
        snakemake.params.trusted["trusted_npz"],
    )
    parity = validation.parity_record(wildcards.model, wildcards.onnx_variant)
    log.info(
        "zoo parity %s over %d tests: %s",
        parity["verdict"],
        parity["samples"],
        "; ".join(parity["failures"]) or "every output within tolerance",
    )
    write_json(snakemake.output.parity, parity)
    write_json(snakemake.output.accuracy, NO_LABELS)
