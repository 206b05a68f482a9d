"""Render results/report.md from the summary, each model's export record and, for Model Zoo
models and detectors, their per-test and per-size checks."""

import json
from pathlib import Path

import pandas as pd

from onnxstudy.jobs import job_log
from onnxstudy.report import render_report
from onnxstudy.zoo import check_rows

with job_log(snakemake.log[0]):
    summary = pd.read_csv(snakemake.input.summary)
    zoo_checks = [
        row
        for path in snakemake.input.zoo
        for row in check_rows(json.loads(Path(path).read_text()))
    ]
    exports = {
        Path(p).parent.name: json.loads(Path(p).read_text()) for p in snakemake.input.exports
    }
    detections = {
        Path(p).parent.parent.name: json.loads(Path(p).read_text())
        for p in snakemake.input.detections
    }
    text = render_report(summary, snakemake.params.config_text, zoo_checks, exports, detections)
    tmp = Path(snakemake.output.report + ".partial")
    tmp.write_text(text)
    tmp.replace(snakemake.output.report)
