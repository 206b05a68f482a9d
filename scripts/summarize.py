"""Gather every cell into results/summary.csv."""

from onnxstudy.jobs import job_log
from onnxstudy.report import build_summary, write_csv_atomically

with job_log(snakemake.log[0]) as log:
    summary = build_summary(snakemake.input.bench, snakemake.params.results)
    write_csv_atomically(summary, snakemake.output.summary)
    log.info("%d cells, %d ok", len(summary), int((summary["status"] == "ok").sum()))
