"""Shared fixtures: the repository, the tiny config, and one tiny study run once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(
    workdir: Path, *args: str, config: Path = TINY_CONFIG, check=True, repo: Path = REPO
):
    """Run the workflow of `repo` (this repository by default) in `workdir` with `config`;
    returns the process, or fails the test with Snakemake's output when `check` is set."""
    command = [
        *SNAKEMAKE,
        "--snakefile",
        str(repo / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
        "--cores",
        "2",
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    process = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    if check and process.returncode != 0:
        raise AssertionError(
            f"snakemake failed:\n{process.stdout[-4000:]}\n{process.stderr[-8000:]}"
        )
    return process


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """A working directory where the tiny study has run to completion."""
    workdir = tmp_path_factory.mktemp("tiny_study")
    shutil.copy(TINY_CONFIG, workdir / "config.yaml")
    run_snakemake(workdir)
    return workdir
