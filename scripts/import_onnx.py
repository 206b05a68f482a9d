"""Take a Model Zoo model as it is for the fp32 variant (no PyTorch export)."""

from onnxstudy.config import resolve_model
from onnxstudy.export import peak_rss
from onnxstudy.jobs import job_log, write_json
from onnxstudy.sources import import_onnx_model

with job_log(snakemake.log[0]):
    spec = resolve_model(snakemake.config, snakemake.wildcards.model)
    with peak_rss() as memory:
        record = import_onnx_model(snakemake.input.model, snakemake.output.onnx, spec)
    write_json(snakemake.output.record, {**record, **memory})
