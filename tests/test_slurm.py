"""profiles/slurm on a real Slurm: a one-node cluster comes up, runs a tiny study, goes down.

Skips, saying why, only where the cluster cannot start: Slurm not installed, not root, or a real
Slurm configuration already in /etc/slurm. CI installs slurm-wlm and munge in .ci/run.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, SNAKEMAKE
from tests.slurm.cluster import single_node_cluster, why_unavailable

pytestmark = pytest.mark.workflow

SLURM_CONFIG = REPO / "tests" / "configs" / "slurm.yaml"
# The 11 jobs take about two minutes, mostly status polling; a run past this limit is stopped
# with SIGINT, on which Snakemake cancels its Slurm jobs.
RUN_LIMIT_S = 600
CANCEL_LIMIT_S = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_unavailable()
    if reason:
        pytest.skip(f"no test Slurm cluster: {reason}")
    with single_node_cluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def slurm_study(cluster, tmp_path_factory) -> Path:
    """A working directory where the study of tests/configs/slurm.yaml ran through Slurm."""
    workdir = tmp_path_factory.mktemp("slurm_study")
    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(SLURM_CONFIG),
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        # The one change to the profile: jobs here end within seconds, so poll from the start.
        "--slurm-init-seconds-before-status-checks",
        "1",
    ]
    # Slurm variables of an enclosing job would make Snakemake act as a job step.
    env = {name: value for name, value in os.environ.items() if not name.startswith("SLURM_")}
    env["PYTHONPATH"] = str(REPO)
    output = workdir / "snakemake.out"
    with open(output, "w") as out:
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            process.wait(timeout=RUN_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=CANCEL_LIMIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            pytest.fail(f"the Slurm run took over {RUN_LIMIT_S} s:\n{tail(output)}")
    assert process.returncode == 0, f"the Slurm run failed:\n{tail(output)}"
    return workdir


def tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:]


def test_the_study_completes_through_slurm(slurm_study):
    summary = pd.read_csv(slurm_study / "results" / "summary.csv")
    cells = summary.set_index(["variant", "provider"])
    assert sorted(cells.index) == [
        ("fp32", "cpu"),
        ("fp32", "cuda"),
        ("torch", "cpu"),
        ("torch", "cuda"),
    ]

    cpu = summary[summary["provider"] == "cpu"]
    assert (cpu["status"] == "ok").all()
    assert (cpu["provider_used"] == "cpu").all()
    assert cpu["p50_ms"].gt(0).all()
    assert cells.loc[("fp32", "cpu"), "max_abs_err"] <= 1e-4
    assert cells.loc[("fp32", "cpu"), "accuracy"] >= 0.8

    import torch

    gpu = summary[summary["provider"] == "cuda"]
    if torch.cuda.is_available():
        assert (gpu["status"] == "ok").all() and (gpu["provider_used"] == "cuda").all()
    else:
        assert (gpu["status"] == "skipped").all()
        assert gpu["reason"].str.contains("CUDA").all()
    assert (slurm_study / "results" / "report.md").stat().st_size > 0


def test_each_job_asked_slurm_for_what_its_cell_needs(cluster, slurm_study):
    jobs = {job["Comment"]: job for job in cluster.jobs()}
    rules = sorted(comment.split("_wildcards")[0].removeprefix("rule_") for comment in jobs)
    assert rules == sorted(
        ["data", "weights", "reference", "export", "evaluate", "summarize", "report"]
        + ["bench"] * 4
    )
    assert {job["JobState"] for job in jobs.values()} == {"COMPLETED"}

    for comment, job in jobs.items():
        gpu_cell = comment.endswith("_cuda_1")
        assert job["Partition"] == (cluster.gpu_partition if gpu_cell else cluster.cpu_partition)
        assert (job.get("TresPerJob") == "gres:gpu:1") == gpu_cell, comment
    cpu_cells = [job for comment, job in jobs.items() if comment.endswith("_cpu_1")]
    assert len(cpu_cells) == 2
    assert all(job["OverSubscribe"] == "NO" for job in cpu_cells), "CPU cells run alone"
