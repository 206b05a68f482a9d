# Turns PyTorch models into ONNX fp32, fp16 and int8 variants, checks each against its
# reference, times it against PyTorch and writes results/summary.csv and results/report.md.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/weights.smk"
include: "rules/export.smk"
include: "rules/precision.smk"
include: "rules/fidelity.smk"
include: "rules/text.smk"
include: "rules/bench.smk"
include: "rules/report.smk"


onsuccess:
    remove_stale_outputs()


onerror:
    set_aside_stale_outputs()


# The contract's per-cell files are targets too, so a plain run rebuilds a deleted one.
rule all:
    default_target: True
    input:
        "results/summary.csv",
        "results/report.md",
        bench_cells(),
        evaluation_records(),
