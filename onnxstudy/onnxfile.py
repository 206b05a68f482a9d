"""ONNX files on disk: weights in external data when they are big, atomic writes, true sizes.

protobuf refuses messages of 2 GiB or more, so a model whose weights exceed a threshold is
written as two files: `<name>.onnx` (the graph) and `<name>.onnx.data` (every tensor of 1 KiB
or more, at locations relative to the .onnx), which must stay side by side. Every stage that
writes a variant goes through `save_onnx`, and every size reported is `variant_size_bytes`,
which counts the data file too. This module imports neither torch nor ONNX Runtime.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import load_external_data_for_model

# protobuf refuses messages of 2 GiB or more; the default leaves ~147 MB for the graph itself.
PROTOBUF_LIMIT_BYTES = 2**31 - 1
EXTERNAL_DATA_THRESHOLD_BYTES = 2_000_000_000
# Tensors smaller than this stay in the .onnx file even when the rest goes to external data.
EXTERNAL_TENSOR_MIN_BYTES = 1024


def default_opset(proto: onnx.ModelProto) -> int:
    """The model's opset of the default (ai.onnx) domain; 0 when it imports none."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Bytes of a tensor's values, from its shape and type: protobuf cannot even measure
    (ByteSize) a tensor over 2 GiB, and reading its raw_data would copy it."""
    if tensor.data_type == onnx.TensorProto.STRING:
        return tensor.ByteSize()
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def initializer_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of the graph's initializers (weights), the part that can outgrow 2 GB."""
    return sum(tensor_bytes(tensor) for tensor in proto.graph.initializer)


def write_onnx(
    proto: onnx.ModelProto,
    path: str | Path,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD_BYTES,
    keep: bool = True,
) -> str | None:
    """Write `proto` to `path`, with its weights in `<name>.data` beside it when they are big.

    When the initializers exceed `external_data_threshold` bytes, every tensor of 1 KiB or
    more goes to one file `<path name>.data` with a relative location, so the pair can be
    moved together. onnx's writer empties the tensors it moves out; with `keep` they are read
    back, so `proto` is unchanged for the caller; a caller that drops the proto passes
    keep=False and saves the re-read. An existing data file of that name is replaced, not
    appended to. Not atomic: see `save_onnx`.

    Returns:
        The data file's name when external data was written, else None.
    """
    path = Path(path)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    if initializer_bytes(proto) <= external_data_threshold:
        onnx.save_model(proto, str(path))
        return None
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=EXTERNAL_TENSOR_MIN_BYTES,
    )
    # onnx creates the data file readable by its owner only; give it the .onnx file's mode.
    data.chmod(path.stat().st_mode & 0o777)
    if keep:
        load_external_data_for_model(proto, str(path.parent))
    return data.name


def save_onnx(
    proto: onnx.ModelProto,
    out_path: str | Path,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD_BYTES,
    keep: bool = True,
) -> str | None:
    """Write `proto` like `write_onnx` (`keep` likewise), atomically: staged in
    `<out_path>.staging/`, then moved.

    For the stages after export (fp16, int8): load a variant with `onnx.load(path)` (external
    data is read with it) and save the result with this function. A data file left by an
    earlier write of `out_path` is removed when the new file has none.

    Returns:
        The external data file's name, or None.
    """
    out_path = Path(out_path)
    staging = out_path.with_name(out_path.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        external = write_onnx(proto, staging / out_path.name, external_data_threshold, keep)
        publish_onnx(staging / out_path.name, out_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return external


def publish_onnx(staged: Path, out_path: Path) -> None:
    """Move a staged .onnx and its .data (if any) to `out_path`; the .onnx goes last, so a
    file that looks finished always has its data beside it."""
    staged_data = staged.with_name(staged.name + ".data")
    out_data = out_path.with_name(out_path.name + ".data")
    if staged_data.exists():
        staged_data.replace(out_data)
        staged.replace(out_path)
    else:
        staged.replace(out_path)
        out_data.unlink(missing_ok=True)


def external_data_files(path: str | Path) -> list[Path]:
    """The external data files the model at `path` refers to (existing or not), sorted."""
    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    tensors = list(proto.graph.initializer)
    tensors += [
        attribute.t
        for node in proto.graph.node
        for attribute in node.attribute
        if attribute.type == onnx.AttributeProto.TENSOR
    ]
    locations = {
        entry.value
        for tensor in tensors
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return sorted(path.parent / location for location in locations)


def derived_threshold(source: str | Path) -> int:
    """The external data threshold for a variant made from the model at `source`.

    A variant keeps its source's layout: 0 (every weight of 1 KiB or more to external data)
    when `source` has external data, else EXTERNAL_DATA_THRESHOLD_BYTES, so a variant made
    from a small file is inline unless its own weights pass 2 GB.
    """
    return 0 if external_data_files(source) else EXTERNAL_DATA_THRESHOLD_BYTES


def variant_size_bytes(path: str | Path) -> int:
    """Bytes on disk of a variant: the .onnx file plus every external data file it uses.

    Raises:
        FileNotFoundError: When the .onnx or one of its data files is missing.
    """
    path = Path(path)
    return path.stat().st_size + sum(data.stat().st_size for data in external_data_files(path))
