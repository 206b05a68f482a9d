import os
import re
import sys

import yaml
from snakemake.utils import validate

# The workflow and its jobs import the library from this checkout, installed or not; this
# sets PYTHONPATH for the jobs rather than requiring the user to.
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (workflow.basedir, os.getenv("PYTHONPATH")) if p
    )
)

from onnxstudy.config import resolve_model

validate(config, schema="../schemas/config.schema.yaml")

MODELS = sorted(config["models"])
SPECS = {name: resolve_model(config, name) for name in MODELS}
PROVIDERS = config["benchmark"]["providers"]
BATCHES = config["benchmark"]["batch_sizes"]
GPU_PROVIDERS = ("cuda", "tensorrt")
ENV = "../envs/study.yaml"


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    variant="torch|fp32|fp16|int8",
    onnx_variant="fp32|fp16|int8",
    provider="cpu|cuda|tensorrt",
    batch=r"\d+",


def model_settings(*fields):
    """Params of a rule: the resolved model settings it depends on, so editing one of them in
    config.yaml re-runs that rule for that model and nothing else."""

    def settings(wildcards):
        spec = SPECS[wildcards.model]
        return {field: getattr(spec, field) for field in fields}

    return settings


def parity_tolerance(wildcards):
    return SPECS[wildcards.model].tolerances.get(wildcards.onnx_variant, {})


def int8_recipe(wildcards):
    return SPECS[wildcards.model].int8


def bench_inputs(wildcards):
    inputs = {
        "samples": f"results/{wildcards.model}/samples.npz",
        "weights": f"results/{wildcards.model}/weights.pt",
    }
    if wildcards.variant != "torch":
        inputs["onnx"] = f"results/{wildcards.model}/{wildcards.variant}.onnx"
    return inputs


def gpu_count(wildcards):
    return 1 if wildcards.provider in GPU_PROVIDERS else 0


def bench_cells():
    """Every benchmark CSV of the study: PyTorch and each variant, per provider and batch."""
    return [
        f"results/{model}/bench/{variant}_{provider}_b{batch}.csv"
        for model in MODELS
        for variant in ("torch", *SPECS[model].variants)
        for provider in PROVIDERS
        for batch in BATCHES
    ]


def evaluation_records():
    records = []
    for model in MODELS:
        records.append(f"results/{model}/accuracy/torch.json")
        records.append(f"results/{model}/weights.json")
        for variant in SPECS[model].variants:
            records.append(f"results/{model}/{variant}.onnx")
            records.append(f"results/{model}/parity/{variant}.json")
            records.append(f"results/{model}/accuracy/{variant}.json")
    return records


def results_dir(wildcards, output):
    return os.path.dirname(output.summary)


def config_as_yaml():
    return yaml.safe_dump(config, sort_keys=False)
