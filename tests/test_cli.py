"""onnxstudy.cli: `python -m onnxstudy validate DIR` prints a verdict per test and exits by it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxstudy.cli import EXIT_FAIL, EXIT_PASS, EXIT_UNUSABLE, main
from onnxstudy.zoo import write_npz_test
from tests.conftest import REPO

SHIPPED = REPO / "zoo" / "digits_mlp"


@pytest.fixture
def zoo_copy(tmp_path):
    """A copy of the shipped zoo model to damage."""
    return shutil.copytree(SHIPPED, tmp_path / "digits_mlp")


def test_python_m_validate_passes_the_shipped_model():
    process = subprocess.run(
        [sys.executable, "-m", "onnxstudy", "validate", str(SHIPPED)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert process.returncode == EXIT_PASS, process.stderr
    lines = process.stdout.splitlines()
    assert lines[1].startswith("test_data_set_0: pass (inputs matched by name; max abs err")
    assert lines[2].startswith("test_data_0.npz: pass (inputs matched by position; max abs err")
    assert lines[-1] == "verdict: pass (2/2 tests passed; rtol 0.001, atol 0.001)"


def test_a_changed_expected_output_fails_and_names_the_output(zoo_copy, capsys):
    path = zoo_copy / "test_data_set_0" / "output_1.pb"
    probabilities = numpy_helper.to_array(onnx.load_tensor_from_string(path.read_bytes()))
    shifted = np.roll(probabilities, 1, axis=1)  # every image now "predicts" the next digit
    path.write_bytes(numpy_helper.from_array(shifted, "probabilities").SerializeToString())

    assert main(["validate", str(zoo_copy)]) == EXIT_FAIL
    out = capsys.readouterr().out
    assert "test_data_set_0: mismatch" in out and "test_data_0.npz: pass" in out
    assert "  probabilities: " in out and "elements beyond atol 0.001 + rtol 0.001" in out
    assert out.rstrip().endswith("verdict: fail (1/2 tests passed; rtol 0.001, atol 0.001)")


def test_tolerances_come_from_the_command_line(capsys):
    # The float32 graph differs from the float64 reference by about 4e-6: too much for 1e-8.
    assert main(["validate", str(SHIPPED), "--rtol", "0", "--atol", "1e-8"]) == EXIT_FAIL
    assert "rtol 0, atol 1e-08" in capsys.readouterr().out


def test_missing_outputs_are_unusable_test_data_named_on_stderr(zoo_copy, capsys):
    (zoo_copy / "test_data_set_0" / "output_1.pb").unlink()
    assert main(["validate", str(zoo_copy)]) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert "test_data_set_0: holds 1 output(s), the graph has 2 (logits, probabilities)" in err


def test_pickled_npz_needs_trust_npz(zoo_copy, capsys):
    with np.load(zoo_copy / "test_data_0.npz") as npz:
        pixels, outputs = npz["inputs"][0], list(npz["outputs"])
    # Outputs of two dtypes cannot be stacked: written as an object array, as the zoo does.
    outputs[1] = outputs[1].astype(np.float64)
    write_npz_test(zoo_copy / "test_data_0.npz", [pixels], outputs)

    assert main(["validate", str(zoo_copy)]) == EXIT_UNUSABLE
    assert "'outputs' is a pickled object array" in capsys.readouterr().err
    assert main(["validate", str(zoo_copy), "--trust-npz"]) == EXIT_PASS


def test_a_gpu_provider_without_a_gpu_is_refused(capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        import torch

        if torch.cuda.is_available():
            pytest.skip("this host has a GPU: the provider may really run")
    assert main(["validate", str(SHIPPED), "--provider", "cuda"]) == EXIT_UNUSABLE
    assert "CUDAExecutionProvider" in capsys.readouterr().err
