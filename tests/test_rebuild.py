"""Incremental rebuilds: after a change, Snakemake plans exactly the jobs that the change touches.

The two-model study runs once for the module. Each test then makes one change (in a copy of the
study, or of the repository, when the change edits files) and compares the jobs a dry run plans
with the jobs the change should re-run. A job reads `rule wildcard-values`, e.g.
`bench digits_a int8 cpu 1`; the pseudo-rule `all` is left out.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_snakemake

pytestmark = pytest.mark.workflow

TWO_MODELS = REPO / "tests" / "configs" / "two_models.yaml"
# What a copy of the repository leaves out: history, the environment, outputs of runs.
NOT_COPIED = (".git", ".venv", "results", "logs", ".snakemake", "build", "*.egg-info", "*_cache*")
JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
JOB_COUNT = re.compile(r"^total\s+(\d+)$")


def snakemake(workdir: Path, config: Path, *args: str, repo: Path = REPO):
    """Run the workflow of `repo` in `workdir` with exactly `config`; returns the process."""
    return run_snakemake(workdir, *args, config=config, repo=repo)


def planned_jobs(workdir: Path, config: Path, *targets: str, repo: Path = REPO) -> set[str]:
    """The jobs a dry run plans, as `rule wildcard-values` strings (without `all`)."""
    process = snakemake(workdir, config, "--dry-run", *targets, repo=repo)
    output = process.stdout + process.stderr
    jobs, counted = [], None
    for line in output.splitlines():
        if header := JOB_HEADER.match(line):
            jobs.append([header[1]])
        elif (wildcards := WILDCARDS.match(line)) and jobs:
            jobs[-1] += [pair.split("=", 1)[1] for pair in wildcards[1].split(", ")]
        elif (total := JOB_COUNT.match(line)) and counted is None:
            counted = int(total[1])
    assert len(jobs) == (counted or 0), f"parsed {len(jobs)} jobs, Job stats says {counted}"
    planned = {" ".join(job) for job in jobs if job != ["all"]}
    assert len(planned) == len(jobs) - (["all"] in jobs), "a job is planned twice"
    return planned


def model_jobs(model: str) -> set[str]:
    """Every job of one model of the two-model study: variants fp32, fp16, int8 on the CPU."""
    return {
        f"data {model}",
        f"weights {model}",
        f"reference {model}",
        f"export {model}",
        f"fp16 {model}",
        f"int8 {model} int8",
        *(f"evaluate {model} {variant}" for variant in ("fp32", "fp16", "int8")),
        *(f"bench {model} {variant} cpu 1" for variant in ("torch", "fp32", "fp16", "int8")),
    }


def write_config(folder: Path, name: str, config: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_study(study: Path, destination: Path) -> Path:
    """A copy of a study's working directory, file times and Snakemake's records included."""
    return Path(shutil.copytree(study, destination, symlinks=True))


def modification_times(workdir: Path) -> dict[str, int]:
    return {
        str(path.relative_to(workdir)): path.stat().st_mtime_ns
        for path in (workdir / "results").rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A working directory where the two-model study ran to completion (no config.yaml in it:
    every run names its config, so a changed config replaces the study's instead of extending
    it)."""
    workdir = tmp_path_factory.mktemp("two_models")
    snakemake(workdir, TWO_MODELS)
    return workdir


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load(TWO_MODELS.read_text())


def test_a_second_run_plans_nothing(study):
    assert planned_jobs(study, TWO_MODELS) == set()


def test_reordering_config_keys_reruns_only_the_report(study, config, tmp_path):
    """Settings are compared by value: only the report, which prints the config, is redone."""
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(yaml.safe_dump(config, sort_keys=True))
    assert planned_jobs(study, reordered) == {"report"}


def test_changing_one_models_int8_recipe_reruns_only_its_int8_chain(study, config, tmp_path):
    config["models"]["digits_a"]["int8"] = {"per_channel": False}
    changed = write_config(tmp_path, "per_tensor.yaml", config)
    int8_chain = {"int8 digits_a int8", "evaluate digits_a int8", "bench digits_a int8 cpu 1"}
    assert planned_jobs(study, changed) == int8_chain | {"summarize", "report"}

    # Run it: exactly the int8 chain's files change, and the new recipe is in force.
    workdir = copy_study(study, tmp_path / "study")
    before = modification_times(workdir)
    snakemake(workdir, changed)
    after = modification_times(workdir)
    assert {path for path in after if after[path] != before.get(path)} == {
        "results/digits_a/int8.onnx",
        "results/digits_a/int8.json",
        "results/digits_a/parity/int8.json",
        "results/digits_a/accuracy/int8.json",
        "results/digits_a/bench/int8_cpu_b1.csv",
        "results/summary.csv",
        "results/report.md",
    }
    record = json.loads((workdir / "results" / "digits_a" / "int8.json").read_text())
    assert record["recipe"]["per_channel"] is False
    assert planned_jobs(workdir, changed) == set()


def test_editing_a_stage_script_reruns_that_stage(study, tmp_path):
    repo = Path(
        shutil.copytree(REPO, tmp_path / "repo", ignore=shutil.ignore_patterns(*NOT_COPIED))
    )
    assert planned_jobs(study, TWO_MODELS, repo=repo) == set(), "a faithful copy re-runs nothing"

    script = repo / "scripts" / "fp16.py"
    script.write_text(script.read_text() + "# An edit.\n")
    fp16_chain = {
        f"{job} {model}{suffix}"
        for model in ("digits_a", "digits_b")
        for job, suffix in (("fp16", ""), ("evaluate", " fp16"), ("bench", " fp16 cpu 1"))
    }
    assert planned_jobs(study, TWO_MODELS, repo=repo) == fp16_chain | {"summarize", "report"}


def test_deleting_an_intermediate_rebuilds_it_and_only_its_dependents(study, tmp_path):
    """Every file of the output contract is a target of `all`, so a plain run rebuilds a deleted
    one and everything that depends on it, and only that."""
    workdir = copy_study(study, tmp_path / "study")
    deleted = "results/digits_b/fp16.onnx"
    (workdir / deleted).unlink()

    assert planned_jobs(workdir, TWO_MODELS) == {
        "fp16 digits_b",
        "evaluate digits_b fp16",
        "bench digits_b fp16 cpu 1",
        "summarize",
        "report",
    }


def test_adding_a_model_adds_only_its_jobs(study, config, tmp_path):
    config["models"]["digits_c"] = dict(config["models"]["digits_a"])
    added = write_config(tmp_path, "three_models.yaml", config)
    assert planned_jobs(study, added) == model_jobs("digits_c") | {"summarize", "report"}
