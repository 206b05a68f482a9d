"""Render results/report.md from the summary."""

from pathlib import Path

import pandas as pd

from onnxstudy.jobs import job_log
from onnxstudy.report import render_report

with job_log(snakemake.log[0]):
    summary = pd.read_csv(snakemake.input.summary)
    text = render_report(summary, snakemake.params.config_text)
    tmp = Path(snakemake.output.report + ".partial")
    tmp.write_text(text)
    tmp.replace(snakemake.output.report)
