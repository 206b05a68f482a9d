import json
import os
import re
import sys
import time
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The workflow and its jobs import the library from this checkout, installed or not; this
# sets PYTHONPATH for the jobs rather than requiring the user to.
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p for p in (workflow.basedir, os.getenv("PYTHONPATH")) if p
    )
)

from onnxstudy.config import (
    DEFAULT_SEQUENCE_LENGTHS,
    ONNX_VARIANT_PATTERN,
    STATIC_INT8_PATTERN,
    VARIANT_PATTERN,
    resolve_model,
)
from onnxstudy.onnxfile import variant_size_bytes
from onnxstudy.zoo import find_zoo_model, source_path

# When this run began: a summary or report older than that was not rebuilt by it.
RUN_STARTED = time.time()
STUDY_OUTPUTS = ("results/summary.csv", "results/report.md")


def set_aside_stale_outputs():
    """After a failed run, rename the summary and report it did not rewrite to
    `<name>.stale.<ext>`: a failed job feeds them, so they describe an earlier state of the
    study and must not look current. A later successful run removes the stale copies."""
    for name in STUDY_OUTPUTS:
        path = Path(name)
        if path.is_file() and path.stat().st_mtime < RUN_STARTED:
            stale = path.with_name(f"{path.stem}.stale{path.suffix}")
            path.replace(stale)
            print(
                f"{name} is from an earlier run that the failed jobs above keep from being "
                f"rebuilt; it is now {stale}. Fix or remove what failed and run again.",
                file=sys.stderr,
            )


def remove_stale_outputs():
    """After a successful run, drop the stale copy of each output that is current again."""
    for name in STUDY_OUTPUTS:
        path = Path(name)
        if path.is_file():
            path.with_name(f"{path.stem}.stale{path.suffix}").unlink(missing_ok=True)


def validate_config(config):
    """Snakemake's schema validation (which fills defaults), with its failure put in one
    sentence: where in the config, what is wrong, and where the keys are described."""
    try:
        validate(config, schema="../schemas/config.schema.yaml")
    except WorkflowError as error:
        # Snakemake raises it while handling jsonschema's error, which carries the place.
        found = error.__context__
        if not isinstance(found, jsonschema.ValidationError):
            raise
        where = " > ".join(str(part) for part in found.absolute_path) or "the top level"
        raise WorkflowError(
            f"the config is not valid at {where}: {found.message}. Cure: fix or remove that "
            "key or value; schemas/config.schema.yaml lists every key and README.md, "
            "'Configuration', explains them"
        ) from None


validate_config(config)

MODELS = sorted(config["models"])


def resolved_models():
    """Every model's spec; a setting that cannot work stops the run at start in one sentence
    (resolve_model's, which names the model and what to change), without a traceback."""
    try:
        return {name: resolve_model(config, name) for name in MODELS}
    except ValueError as error:
        raise WorkflowError(str(error)) from None


SPECS = resolved_models()
ZOO_MODELS = [name for name in MODELS if SPECS[name].kind == "onnx"]
TORCH_MODELS = [name for name in MODELS if name not in ZOO_MODELS]
# torchvision detectors: one image in, boxes out; exported and checked per image size.
DETECTION_MODELS = [name for name in MODELS if SPECS[name].task == "detection"]
# hf: sentence encoders: compared as sentence embeddings, timed per sequence length.
TEXT_MODELS = [name for name in MODELS if SPECS[name].task == "embedding"]
# PyTorch models whose outputs are compared element by element with a reference.
TENSOR_MODELS = [
    name
    for name in TORCH_MODELS
    if name not in DETECTION_MODELS and name not in TEXT_MODELS
]
PROVIDERS = config["benchmark"]["providers"]
BATCHES = config["benchmark"]["batch_sizes"]
GPU_PROVIDERS = ("cuda", "tensorrt")
ENV = "../envs/study.yaml"


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    variant=VARIANT_PATTERN,
    onnx_variant=ONNX_VARIANT_PATTERN,
    int8_variant=STATIC_INT8_PATTERN,
    provider="cpu|cuda|tensorrt",
    batch=r"\d+",


def model_weights_mb(model):
    """MB of a model's weights on disk once they are there: its fp32.onnx with any external
    data, else its weights.pt; 0 before either exists."""
    onnx_file = os.path.join("results", model, "fp32.onnx")
    try:
        return variant_size_bytes(onnx_file) / 1e6
    except FileNotFoundError:
        pass
    weights = os.path.join("results", model, "weights.pt")
    return os.path.getsize(weights) / 1e6 if os.path.exists(weights) else 0


def memory_mb(base, per_weight_mb):
    """A rule's mem_mb: `base` MB plus `per_weight_mb` MB per MB of the model's weights.

    Snakemake evaluates it again once the job's inputs exist, so a large model asks a cluster
    for enough memory, and a local run given `--resources mem_mb=N` does not start two large
    jobs side by side. Peaks measured on a 2.3 GB MLP: export 3.3x its weights, fp16 4.2x,
    int8 5.4x.
    """

    def estimate(wildcards):
        return base + int(per_weight_mb * model_weights_mb(wildcards.model))

    return estimate


def canonical(value):
    """`value` with the keys of every mapping in it sorted. Snakemake compares params by their
    repr, so the order in which config.yaml lists keys must not re-run anything."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return type(value)(canonical(item) for item in value)
    return value


def model_settings(*fields):
    """Params of a rule: the resolved model settings it depends on, so editing one of them in
    config.yaml re-runs that rule for that model and nothing else."""

    def settings(wildcards):
        spec = SPECS[wildcards.model]
        return {field: canonical(getattr(spec, field)) for field in fields}

    return settings


def parity_tolerance(wildcards):
    return canonical(SPECS[wildcards.model].tolerance(wildcards.onnx_variant))


def int8_recipe(wildcards):
    return canonical(SPECS[wildcards.model].int8_recipe(wildcards.int8_variant))


def fp16_tolerance(wildcards):
    """The fp16 parity criteria the fp16 conversion is checked, and repaired, against."""
    return canonical(SPECS[wildcards.model].tolerance("fp16"))


def true_fp16_samples(wildcards):
    """Samples an fp16 evaluation runs with true fp16 arithmetic (None: the library's
    default); 0 for the other variants."""
    if wildcards.onnx_variant != "fp16":
        return 0
    return SPECS[wildcards.model].fp16.get("reference_samples")


def dynamic_int8_built(model):
    """Whether the int8dyn variant of `model` is built. Its plan, a checkpoint, decides from
    the fp32 graph, so the answer exists only once the plan has run."""
    plan = checkpoints.int8dyn_plan.get(model=model).output.plan
    with open(plan) as stream:
        return json.load(stream)["build"]


def is_skipped(model, variant):
    return variant == "int8dyn" and not dynamic_int8_built(model)


def model_pattern(models):
    """A wildcard constraint that matches exactly `models`, and nothing when there are none."""
    return "|".join(re.escape(m) for m in models) or "(?!)"


def locate_zoo_model(name):
    """The model file and tests of the `onnx:` model `name`; a missing or unusable path stops
    the run at start, naming the model."""
    try:
        return find_zoo_model(source_path(SPECS[name].target, workflow.basedir))
    except (OSError, ValueError) as error:
        raise WorkflowError(
            f"model '{name}': source {SPECS[name].source}: {error}. Cure: give the model's "
            "folder or .onnx file relative to the folder holding the Snakefile, or absolute"
        ) from None


ZOO = {name: locate_zoo_model(name) for name in ZOO_MODELS}


def zoo_inputs(wildcards):
    """The model file and every test data file of a zoo model, so editing one re-runs."""
    zoo = ZOO[wildcards.model]
    return {"model": str(zoo.model), "tests": [str(p) for p in zoo.test_data_files()]}


def torch_baseline(model):
    """("torch",) for models with a PyTorch form; () for zoo models, which have none."""
    return () if model in ZOO_MODELS else ("torch",)


def zoo_parity_records():
    """An input function (see bench_cells): the parity record of each zoo model's variant."""

    def records(wildcards):
        return [
            f"results/{model}/parity/{variant}.json"
            for model in ZOO_MODELS
            for variant in SPECS[model].variants
            if not is_skipped(model, variant)
        ]

    return records


def bench_inputs(wildcards):
    inputs = {"samples": f"results/{wildcards.model}/samples.npz"}
    if wildcards.model in TORCH_MODELS:
        inputs["weights"] = f"results/{wildcards.model}/weights.pt"
    if wildcards.variant != "torch":
        inputs["onnx"] = f"results/{wildcards.model}/{wildcards.variant}.onnx"
    return inputs


def gpu_count(wildcards):
    return 1 if wildcards.provider in GPU_PROVIDERS else 0


def bench_cells():
    """An input function listing every benchmark CSV of the study: PyTorch and each variant,
    per provider and batch. A skipped int8dyn cell has a one-row CSV of its own, with the
    reason, so it reaches the summary as a `skipped` row. It is a function, not a list:
    which int8dyn cells are skipped is known only once their plan checkpoint has run."""

    def cells(wildcards):
        return [
            (
                f"results/{model}/skipped/{variant}_{provider}_b{batch}.csv"
                if is_skipped(model, variant)
                else f"results/{model}/bench/{variant}_{provider}_b{batch}.csv"
            )
            for model in MODELS
            for variant in (*torch_baseline(model), *SPECS[model].variants)
            for provider in PROVIDERS
            for batch in model_batches(model)
        ]

    return cells


def model_batches(model):
    """The batch sizes `model` is timed at: a detector takes one image (batch 1 only); a
    model's own `benchmark: {batch_sizes: ...}`, else the study's."""
    if model in DETECTION_MODELS:
        return [1]
    return SPECS[model].benchmark.get("batch_sizes", BATCHES)


def sequence_lengths(wildcards):
    """Params of the bench rule: the tokens per input a sentence encoder is timed at
    (`benchmark: {sequence_lengths}`, else DEFAULT_SEQUENCE_LENGTHS); [] for others."""
    if wildcards.model not in TEXT_MODELS:
        return []
    lengths = SPECS[wildcards.model].benchmark.get("sequence_lengths")
    return list(lengths or DEFAULT_SEQUENCE_LENGTHS)


def bench_setting(name):
    """Params of the bench rule: the model's own `benchmark:` warmup or runs, else the
    study's."""

    def setting(wildcards):
        return SPECS[wildcards.model].benchmark.get(name, config["benchmark"][name])

    return setting


def python_source_file(wildcards):
    """The file of a `python:` model (so editing it re-runs its jobs); none for others, and
    none while the file is missing, so that its job runs and says what to change while the
    other models go on."""
    spec = SPECS[wildcards.model]
    if spec.kind != "python":
        return []
    file = spec.target.rpartition(":")[0]
    return [file] if Path(file).expanduser().is_file() else []


def evaluation_records():
    """An input function listing each variant's file, parity and accuracy records (for a
    skipped int8dyn: its plan), and the PyTorch baseline's; see bench_cells."""

    def records(wildcards):
        found = []
        for model in MODELS:
            found.append(f"results/{model}/export.json")
            if torch_baseline(model):
                found.append(f"results/{model}/weights.json")
            if torch_baseline(model) and model not in DETECTION_MODELS:
                found.append(f"results/{model}/accuracy/torch.json")
            for variant in SPECS[model].variants:
                if is_skipped(model, variant):
                    found.append(f"results/{model}/{variant}_plan.json")
                    continue
                found.append(f"results/{model}/{variant}.onnx")
                found.append(f"results/{model}/parity/{variant}.json")
                found.append(f"results/{model}/accuracy/{variant}.json")
        return found

    return records


def results_dir(wildcards, output):
    return os.path.dirname(output.summary)


def config_as_yaml():
    return yaml.safe_dump(config, sort_keys=False)
