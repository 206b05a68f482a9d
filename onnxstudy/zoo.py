"""Model Zoo test data: `test_data_set_N/input_K.pb` and `output_K.pb` (serialized TensorProto)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from onnx import TensorProto, numpy_helper

_INDEX = re.compile(r"^(input|output)_(\d+)\.pb$")


def write_test_data_set(
    directory: str | Path,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, np.ndarray],
) -> None:
    """Write one test data set in Model Zoo layout, replacing `directory` atomically.

    Args:
        directory: The `test_data_set_N` folder to create.
        inputs: Graph input name to array, in graph order.
        outputs: Graph output name to array, in graph order.
    """
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for prefix, arrays in (("input", inputs), ("output", outputs)):
        for index, (name, array) in enumerate(arrays.items()):
            tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
            (staging / f"{prefix}_{index}.pb").write_bytes(tensor.SerializeToString())
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def read_tensor(path: str | Path) -> tuple[str, np.ndarray]:
    """Read one serialized TensorProto file; returns its (possibly empty) name and array."""
    tensor = TensorProto()
    tensor.ParseFromString(Path(path).read_bytes())
    return tensor.name, numpy_helper.to_array(tensor)


def read_test_data_set(directory: str | Path) -> tuple[list[tuple[str, np.ndarray]], ...]:
    """Read `input_K.pb` and `output_K.pb` of one set, sorted by K as a number.

    Returns:
        (inputs, outputs), each a list of (name, array) in index order.
    """
    found: dict[str, list[tuple[int, Path]]] = {"input": [], "output": []}
    for path in Path(directory).iterdir():
        match = _INDEX.match(path.name)
        if match:
            found[match.group(1)].append((int(match.group(2)), path))
    inputs = [read_tensor(path) for _, path in sorted(found["input"])]
    outputs = [read_tensor(path) for _, path in sorted(found["output"])]
    return inputs, outputs
