"""The summary row of an int8dyn cell its plan skipped: status `skipped`, with the reason."""

import json
from pathlib import Path

import pandas as pd

from onnxstudy.jobs import job_log
from onnxstudy.precision import skipped_row
from onnxstudy.report import write_csv_atomically

with job_log(snakemake.log[0]):
    wildcards = snakemake.wildcards
    plan = json.loads(Path(snakemake.input.plan).read_text())
    row = skipped_row(wildcards.model, "int8dyn", wildcards.provider, int(wildcards.batch), plan)
    write_csv_atomically(pd.DataFrame([row]), snakemake.output.csv)
