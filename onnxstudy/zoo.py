"""Model Zoo models and their reference tests: located, read into one form, validated.

A Model Zoo directory holds one `.onnx` file and its tests in either of two layouts:

- `test_data_set_N/input_K.pb` and `output_K.pb`: one serialized TensorProto per graph input
  and output (SequenceProto or OptionalProto where the graph declares a sequence or optional);
- `test_data_N.npz`: arrays `inputs` and `outputs`, each a list of arrays. The zoo's own files
  store these lists as object arrays, which numpy loads only by unpickling, and unpickling runs
  code: such a file is refused unless the caller marks it as trusted.

Both layouts are read into `ZooTest`, keyed by the graph's input and output names, and
validated alike: per test and output the max abs and rel error, and a verdict against rtol and
atol (by default 1e-3 and 1e-3, as the zoo checks), with integer, bool and string outputs
required to match exactly.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import OptionalProto, SequenceProto, TensorProto, helper, numpy_helper

from onnxstudy.errors import ProviderUnavailable
from onnxstudy.runtime import (
    NOT_LOADABLE,
    OpenedSession,
    classify_failure,
    first_line,
    open_session,
)

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = {"rtol": 1e-3, "atol": 1e-3}
# The accuracy record of a zoo model's variants: zoo tests hold expected outputs, not labels.
NO_LABELS = {
    "metric": "top1",
    "accuracy": None,
    "samples": 0,
    "reason": "Model Zoo tests hold expected outputs, not labels: fidelity is the parity check",
}
PASS = "pass"
MISMATCH = "mismatch"
_TEST_SET = re.compile(r"^test_data_set_(\d+)$")
_NPZ = re.compile(r"^test_data_(\d+)\.npz$")
_INDEX = re.compile(r"^(input|output)_(\d+)\.pb$")


class BrokenTestData(ValueError):
    """Test data that cannot be used as it is; the message names the file and the fault."""


@dataclass(frozen=True)
class ZooModel:
    """Where a Model Zoo model and its tests lie.

    Attributes:
        model: The `.onnx` file.
        test_sets: The `test_data_set_N` folders, by N as a number.
        npz_files: The `test_data_N.npz` files, by N as a number.
    """

    model: Path
    test_sets: tuple[Path, ...]
    npz_files: tuple[Path, ...]

    def test_data_files(self) -> list[Path]:
        """Every file the tests are read from: what a rerun has to watch."""
        pb_files = [
            path
            for folder in self.test_sets
            for path in sorted(folder.iterdir())
            if _INDEX.match(path.name)
        ]
        return pb_files + list(self.npz_files)


@dataclass(frozen=True)
class GraphSignature:
    """A graph's real inputs and its outputs, in graph order.

    Initializers are left out of the inputs: models of IR version 3 and older list every
    initializer among the graph inputs, and zoo test data holds values only for the others.
    """

    inputs: tuple[onnx.ValueInfoProto, ...]
    outputs: tuple[onnx.ValueInfoProto, ...]

    @classmethod
    def of(cls, model: onnx.ModelProto | str | Path) -> GraphSignature:
        if not isinstance(model, onnx.ModelProto):
            model = onnx.load(str(model), load_external_data=False)
        initializers = {tensor.name for tensor in model.graph.initializer}
        inputs = tuple(info for info in model.graph.input if info.name not in initializers)
        return cls(inputs, tuple(model.graph.output))

    @property
    def input_names(self) -> list[str]:
        return [info.name for info in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [info.name for info in self.outputs]


@dataclass
class ZooTest:
    """One reference test of a model, whichever layout it came from.

    Attributes:
        name: `test_data_set_N` or `test_data_N.npz`.
        path: The folder or file it was read from.
        inputs: Graph input name to value (array; list of arrays for a sequence; None for an
            empty optional), in graph order.
        outputs: Graph output name to expected value, in graph order.
        matched_by: How files were mapped to graph inputs: `name` (every file's tensor name is
            a graph input), `position` (none is), or `name and position`.
    """

    name: str
    path: Path
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    matched_by: str


@dataclass
class OutputCheck:
    """One output of one test against its expected value.

    Attributes:
        name: The graph output.
        max_abs_err: Largest |actual - expected|; None for strings and structural mismatches.
        max_rel_err: max_abs_err divided by the largest finite |expected| (scale-free, and
            robust to expected values near zero); None where max_abs_err is.
        cosine: Cosine similarity of the flattened float output with the expected one; None for
            non-float outputs.
        passed: Whether the output meets the tolerance.
        failure: Why it did not, as a sentence; empty when it passed.
    """

    name: str
    max_abs_err: float | None
    max_rel_err: float | None
    cosine: float | None
    passed: bool
    failure: str = ""


@dataclass
class ZooTestResult:
    """The verdict on one test.

    Attributes:
        test: The test's name (`test_data_set_0`, `test_data_0.npz`).
        matched_by: How its inputs were mapped to the graph (see ZooTest).
        status: `pass`, `mismatch`, or why it could not run: `not_implemented` (no kernel for
            an operator or element type) or `run_failed`.
        outputs: One check per graph output; empty when the test could not run.
        reason: The runtime's error when the test could not run.
    """

    test: str
    matched_by: str
    status: str
    outputs: list[OutputCheck] = field(default_factory=list)
    reason: str = ""


@dataclass
class ZooValidation:
    """The verdict on a model and all its tests.

    Attributes:
        model: The model file validated.
        status: `pass` when every test passed; `not_loadable` or `not_implemented` when the
            session could not be created; otherwise the status of the first test that did not
            pass (`mismatch`, `not_implemented` or `run_failed`).
        reason: One line on why, when the status is not `pass`.
        tests: One result per test; empty when the model did not load.
        tolerance: The criteria applied (see `effective_tolerance`).
    """

    model: str
    status: str
    reason: str
    tests: list[ZooTestResult]
    tolerance: dict[str, float]

    @property
    def passed(self) -> bool:
        return self.status == PASS

    def parity_record(self, model: str, variant: str) -> dict:
        """The record of a study's parity stage: the summary's fidelity fields over all tests
        and outputs (worst case), the failures as sentences, and every test's checks."""
        checks = [check for test in self.tests for check in test.outputs]
        errors = [c.max_abs_err for c in checks if c.max_abs_err is not None]
        relative = [c.max_rel_err for c in checks if c.max_rel_err is not None]
        cosines = [c.cosine for c in checks if c.cosine is not None]
        failures = [f"{self.status}: {self.reason}"] if not self.tests and self.reason else []
        for test in self.tests:
            if test.reason:
                failures.append(f"{test.test}: {test.status}: {test.reason}")
            failures += [f"{test.test}, {c.name}: {c.failure}" for c in test.outputs if c.failure]
        return {
            "reference": "model zoo",
            "model": model,
            "variant": variant,
            "verdict": "pass" if self.passed else "fail",
            "status": self.status,
            "max_abs_err": max(errors) if errors else None,
            "max_rel_err": max(relative) if relative else None,
            "cosine_min": min(cosines) if cosines else None,
            "top1_agreement": None,
            "samples": len(self.tests),
            "failures": failures,
            "tolerance": self.tolerance,
            "tests": [asdict(test) for test in self.tests],
        }


def _numbered(paths: Iterable[Path], pattern: re.Pattern) -> list[Path]:
    """The paths whose name matches `pattern`, sorted by its number (input_10 after input_9)."""
    found = [(int(match.group(1)), path) for path in paths if (match := pattern.match(path.name))]
    return [path for _, path in sorted(found)]


def source_path(target: str, workflow_dir: str | Path) -> Path:
    """The path of an `onnx:<target>` source: `target` itself when absolute, else taken from
    `workflow_dir` (the directory holding the Snakefile)."""
    path = Path(target).expanduser()
    return path if path.is_absolute() else Path(workflow_dir) / path


def find_zoo_model(path: str | Path) -> ZooModel:
    """Locate a model and its tests: `path` is a zoo directory, or a .onnx file whose tests lie
    beside it. A directory holding several .onnx files must name one of them `model.onnx`.

    Raises:
        FileNotFoundError: When there is no such path or no .onnx file in it.
        BrokenTestData: When the model has no tests, or the directory holds several models.
    """
    path = Path(path)
    if path.is_file():
        model, folder = path, path.parent
    elif path.is_dir():
        folder = path
        candidates = sorted(folder.glob("*.onnx"))
        if not candidates:
            raise FileNotFoundError(f"{folder} holds no .onnx file")
        if len(candidates) > 1 and not (folder / "model.onnx").is_file():
            names = ", ".join(p.name for p in candidates)
            raise BrokenTestData(f"{folder} holds several models ({names}); name one model.onnx")
        model = folder / "model.onnx" if len(candidates) > 1 else candidates[0]
    else:
        raise FileNotFoundError(f"{path} does not exist")

    entries = list(folder.iterdir())
    test_sets = _numbered((p for p in entries if p.is_dir()), _TEST_SET)
    npz_files = _numbered((p for p in entries if p.is_file()), _NPZ)
    if not test_sets and not npz_files:
        raise BrokenTestData(
            f"{folder} has no test data: neither test_data_set_N/ folders nor test_data_N.npz"
        )
    return ZooModel(model, tuple(test_sets), tuple(npz_files))


def _proto_kind(type_proto: onnx.TypeProto) -> str:
    return type_proto.WhichOneof("value") or "tensor_type"


def _read_value(path: Path, type_proto: onnx.TypeProto | None) -> tuple[str, Any]:
    """Parse one .pb file as the proto its graph type calls for; returns (name, value)."""
    kind = _proto_kind(type_proto) if type_proto is not None else "tensor_type"
    proto_types = {
        "tensor_type": (TensorProto, numpy_helper.to_array),
        "sequence_type": (SequenceProto, numpy_helper.to_list),
        "optional_type": (OptionalProto, numpy_helper.to_optional),
    }
    if kind not in proto_types:
        raise BrokenTestData(f"{path}: graph values of type {kind} are not supported")
    proto_type, convert = proto_types[kind]
    proto = proto_type()
    try:
        proto.ParseFromString(path.read_bytes())
        return proto.name, convert(proto)
    except (DecodeError, ValueError, TypeError) as error:
        raise BrokenTestData(f"{path}: not a readable {proto_type.__name__} ({error})") from error


def _numbered_files(directory: Path, prefix: str) -> list[Path]:
    files = _numbered(directory.iterdir(), re.compile(rf"^{prefix}_(\d+)\.pb$"))
    for expected, path in enumerate(files):
        if path.name != f"{prefix}_{expected}.pb":
            raise BrokenTestData(
                f"{directory}: {path.name} is there but {prefix}_{expected}.pb is not"
            )
    return files


def _require_count(where: Path, kind: str, found: int, graph_names: list[str]) -> None:
    if found != len(graph_names):
        listed = ", ".join(graph_names) or "none"
        raise BrokenTestData(
            f"{where}: holds {found} {kind}(s), the graph has {len(graph_names)} ({listed})"
        )


def read_test_data_set(
    directory: str | Path, signature: GraphSignature | None = None
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Read the `input_K.pb` and `output_K.pb` files of one set, sorted by K as a number.

    Args:
        directory: The `test_data_set_N` folder.
        signature: The graph's inputs and outputs. File K is parsed as the proto its graph
            counterpart at position K declares, and the file counts must match the graph.
            Defaults to None: every file is a TensorProto and counts are not checked.

    Returns:
        (inputs, outputs), each a list of (name as stored, possibly empty; value).

    Raises:
        BrokenTestData: On a gap in the numbering, counts that do not fit the graph, no output
            files, or a file that does not parse.
    """
    inputs, outputs, _ = _read_pb_set(Path(directory), signature)
    return inputs, outputs


def _read_pb_set(directory: Path, signature: GraphSignature | None):
    """read_test_data_set's work; also returns the input files, for messages that name them."""
    input_files = _numbered_files(directory, "input")
    output_files = _numbered_files(directory, "output")
    if not output_files:
        raise BrokenTestData(f"{directory}: no output_K.pb files, so nothing to compare with")
    input_types: list[onnx.TypeProto | None] = [None] * len(input_files)
    output_types: list[onnx.TypeProto | None] = [None] * len(output_files)
    if signature is not None:
        _require_count(directory, "input", len(input_files), signature.input_names)
        _require_count(directory, "output", len(output_files), signature.output_names)
        input_types = [info.type for info in signature.inputs]
        output_types = [info.type for info in signature.outputs]
    inputs = [_read_value(p, t) for p, t in zip(input_files, input_types, strict=True)]
    outputs = [_read_value(p, t) for p, t in zip(output_files, output_types, strict=True)]
    return inputs, outputs, input_files


def _match_inputs(stored_names: list[str], signature: GraphSignature) -> tuple[list[str], str]:
    """Which graph input each stored value feeds: by its stored name where that names a graph
    input, the remaining ones by position. Returns (graph name per value, how matched)."""
    graph = signature.input_names
    claimed: dict[int, str] = {}
    for index, name in enumerate(stored_names):
        if name in graph and name not in claimed.values():
            claimed[index] = name
    free = iter(name for name in graph if name not in claimed.values())
    order = [claimed[i] if i in claimed else next(free) for i in range(len(stored_names))]
    if len(claimed) == len(stored_names):
        return order, "name"
    return order, "name and position" if claimed else "position"


def _describe_shape(tensor_type: onnx.TypeProto.Tensor) -> str:
    dims = [
        str(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?"
        for d in tensor_type.shape.dim
    ]
    return "(" + ", ".join(dims) + ")"


def _check_value(value: Any, type_proto: onnx.TypeProto, where: str, name: str) -> Any:
    """Return `value` fit for the graph input `name` of type `type_proto`, or raise naming
    `where` (the file) when its kind, dtype or shape does not fit."""
    kind = _proto_kind(type_proto)
    if kind == "sequence_type":
        if not isinstance(value, list):
            raise BrokenTestData(f"{where}: input '{name}' is a sequence; the file holds a tensor")
        elem = type_proto.sequence_type.elem_type
        return [_check_value(item, elem, where, name) for item in value]
    if kind == "optional_type":
        if value is None:
            return None
        return _check_value(value, type_proto.optional_type.elem_type, where, name)
    if kind != "tensor_type":
        raise BrokenTestData(f"{where}: input '{name}' is a {kind}, which is not supported")
    if not isinstance(value, np.ndarray):
        raise BrokenTestData(f"{where}: input '{name}' is a tensor; the file holds {type(value)}")

    tensor_type = type_proto.tensor_type
    if tensor_type.elem_type != TensorProto.UNDEFINED:
        expected = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        if expected == np.dtype(object) and value.dtype.kind in "OUS":
            value = value.astype(object)
        elif value.dtype != expected:
            raise BrokenTestData(
                f"{where}: dtype {value.dtype} does not fit input '{name}' of type {expected}"
            )
    if tensor_type.HasField("shape"):
        dims = tensor_type.shape.dim
        fits = len(dims) == value.ndim and all(
            not dim.HasField("dim_value") or dim.dim_value == size
            for dim, size in zip(dims, value.shape, strict=False)
        )
        if not fits:
            raise BrokenTestData(
                f"{where}: shape {value.shape} does not fit input '{name}' of shape "
                f"{_describe_shape(tensor_type)}"
            )
    return value


def _build_test(
    name: str,
    path: Path,
    inputs: list[tuple[str, Any]],
    outputs: list[tuple[str, Any]],
    signature: GraphSignature,
    input_files: list[Path],
) -> ZooTest:
    """Map stored inputs to graph inputs, re-read where a by-name match changed the proto kind,
    check every input, and key the outputs by graph output name (always by position)."""
    order, matched_by = _match_inputs([stored for stored, _ in inputs], signature)
    types = {info.name: info.type for info in signature.inputs}
    positional = signature.input_names
    mapped: dict[str, Any] = {}
    for index, (graph_name, (_, value)) in enumerate(zip(order, inputs, strict=True)):
        moved_kind = _proto_kind(types[graph_name]) != _proto_kind(types[positional[index]])
        if moved_kind and input_files:
            value = _read_value(input_files[index], types[graph_name])[1]
        where = str(input_files[index]) if input_files else f"{path} (input {index})"
        mapped[graph_name] = _check_value(value, types[graph_name], where, graph_name)
    ordered_inputs = {graph_name: mapped[graph_name] for graph_name in positional}
    expected = dict(zip(signature.output_names, (value for _, value in outputs), strict=True))
    return ZooTest(name, path, ordered_inputs, expected, matched_by)


def read_test_set(directory: str | Path, signature: GraphSignature) -> ZooTest:
    """Read one `test_data_set_N` folder as a ZooTest for the graph of `signature`.

    Raises:
        BrokenTestData: When the files do not fit the graph (see read_test_data_set and the
            dtype and shape checks); the message names the file.
    """
    directory = Path(directory)
    inputs, outputs, input_files = _read_pb_set(directory, signature)
    return _build_test(directory.name, directory, inputs, outputs, signature, input_files)


def _npz_values(npz: Any, key: str, path: Path) -> list[Any]:
    if key not in npz.files:
        raise BrokenTestData(f"{path}: no '{key}' array (a zoo .npz holds `inputs` and `outputs`)")
    try:
        array = npz[key]
    except ValueError as error:  # numpy refuses object arrays without allow_pickle
        raise BrokenTestData(
            f"{path}: '{key}' is a pickled object array, and unpickling runs code; trust the "
            "file only if you trust where it came from (`trusted_npz:` in config.yaml, "
            "--trust-npz on the command line)"
        ) from error
    return [item if isinstance(item, list) or item is None else np.asarray(item) for item in array]


def read_npz_test(path: str | Path, signature: GraphSignature, trusted: bool = False) -> ZooTest:
    """Read one `test_data_N.npz` as a ZooTest; values are matched to the graph by position.

    Args:
        path: The .npz file.
        signature: The graph's inputs and outputs.
        trusted: Allow object arrays, which numpy loads by unpickling. Defaults to False.

    Raises:
        BrokenTestData: For pickled arrays when not trusted, a missing `inputs` or `outputs`,
            counts that do not fit the graph, or a dtype or shape that does not.
    """
    path = Path(path)
    with np.load(path, allow_pickle=trusted, encoding="latin1") as npz:
        inputs = _npz_values(npz, "inputs", path)
        outputs = _npz_values(npz, "outputs", path)
    _require_count(path, "input", len(inputs), signature.input_names)
    _require_count(path, "output", len(outputs), signature.output_names)
    unnamed = [("", value) for value in inputs]
    return _build_test(path.name, path, unnamed, [("", v) for v in outputs], signature, [])


def read_tests(
    zoo: ZooModel, signature: GraphSignature | None = None, trusted_npz: Collection[str] = ()
) -> list[ZooTest]:
    """Every test of `zoo`: the `test_data_set_N` folders, then the `test_data_N.npz` files.

    Args:
        zoo: The located model.
        signature: The graph to map to. Defaults to None: read from `zoo.model`.
        trusted_npz: Names of .npz files whose object arrays may be unpickled. Defaults to none.
    """
    signature = signature or GraphSignature.of(zoo.model)
    tests = [read_test_set(folder, signature) for folder in zoo.test_sets]
    tests += [read_npz_test(p, signature, p.name in trusted_npz) for p in zoo.npz_files]
    for test in tests:
        log.info("%s: inputs matched to the graph by %s", test.name, test.matched_by)
    return tests


def _to_proto(value: Any, name: str, type_proto: onnx.TypeProto | None) -> Any:
    kind = _proto_kind(type_proto) if type_proto is not None else "tensor_type"
    if kind == "sequence_type":
        return numpy_helper.from_list(value, name)
    if kind == "optional_type":
        return numpy_helper.from_optional(value, name)
    if isinstance(value, TensorProto):
        tensor = TensorProto()
        tensor.CopyFrom(value)
        tensor.name = name
        return tensor
    return numpy_helper.from_array(np.asarray(value, order="C"), name)


def write_test_data_set(
    directory: str | Path,
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    signature: GraphSignature | None = None,
) -> None:
    """Write one test data set in Model Zoo layout, replacing `directory` atomically.

    Args:
        directory: The `test_data_set_N` folder to create.
        inputs: Graph input name to value, in graph order: arrays or TensorProto, and with a
            signature also lists (sequences) and None (empty optionals).
        outputs: Graph output name to value, in graph order.
        signature: The graph, so each value is written as the proto its type declares.
            Defaults to None: every value is a tensor.
    """
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for prefix, values, infos in (
        ("input", inputs, signature.inputs if signature else None),
        ("output", outputs, signature.outputs if signature else None),
    ):
        for index, (name, value) in enumerate(values.items()):
            type_proto = infos[index].type if infos else None
            proto = _to_proto(value, name, type_proto)
            (staging / f"{prefix}_{index}.pb").write_bytes(proto.SerializeToString())
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def _as_npz_list(values: list[np.ndarray]) -> np.ndarray:
    """Arrays of one shape and dtype stacked (loadable without pickle), else an object array."""
    arrays = [np.asarray(value) for value in values]
    if arrays and all(a.shape == arrays[0].shape and a.dtype == arrays[0].dtype for a in arrays):
        return np.stack(arrays)
    stored = np.empty(len(arrays), dtype=object)
    for index, array in enumerate(arrays):
        stored[index] = array
    return stored


def write_npz_test(path: str | Path, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
    """Write one test as a zoo `test_data_N.npz` holding `inputs` and `outputs`, atomically.

    A list of arrays of one shape and dtype is stored stacked, which loads without pickle;
    any other list becomes an object array, as in the zoo's own files, and reading it back
    then needs `trusted=True`.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, inputs=_as_npz_list(inputs), outputs=_as_npz_list(outputs))
    tmp.replace(path)


def effective_tolerance(tolerance: dict[str, float] | None) -> dict[str, float]:
    """The criteria a zoo check applies: `atol`/`rtol` (element-wise |a-e| <= atol + rtol*|e|,
    an absent one counting as 0) and `min_cosine`, as given; DEFAULT_TOLERANCE when none of
    them is. Other keys (such as `min_top1_agreement`) do not apply to zoo outputs."""
    given = {
        k: float(v) for k, v in (tolerance or {}).items() if k in ("atol", "rtol", "min_cosine")
    }
    return given or dict(DEFAULT_TOLERANCE)


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind in "fc" or dtype.name.startswith(("float", "bfloat"))


def _pairs(actual: Any, expected: Any) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """The (actual, expected) arrays to compare, flattening sequences and optionals; a
    structural difference comes back as a failure sentence."""
    if expected is None or actual is None:
        failure = (
            "" if expected is None and actual is None else "one of actual and expected is empty"
        )
        return [], failure
    if isinstance(expected, list) or isinstance(actual, list):
        if not (isinstance(expected, list) and isinstance(actual, list)):
            return [], "a sequence was compared with a tensor"
        if len(actual) != len(expected):
            return [], f"sequence of {len(actual)} values, expected {len(expected)}"
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for a, e in zip(actual, expected, strict=True):
            inner, failure = _pairs(a, e)
            if failure:
                return [], failure
            pairs += inner
        return pairs, ""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return [], f"shape {actual.shape} differs from the expected {expected.shape}"
    return [(actual, expected)], ""


def _float_errors(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float):
    """(max abs error, largest finite |expected|, elements out of tolerance, cosine)."""
    a = actual.astype(np.complex128 if actual.dtype.kind == "c" else np.float64)
    e = expected.astype(np.complex128 if expected.dtype.kind == "c" else np.float64)
    same = (a == e) | (np.isnan(a) & np.isnan(e))
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, counted as inf
        gap = np.abs(a - e)
    diff = np.where(same, 0.0, np.where(np.isnan(gap), np.inf, gap))
    finite_e = np.where(np.isfinite(e), np.abs(e), 0.0)
    bad = int(np.count_nonzero(diff > atol + rtol * finite_e))
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(finite_e.max()) if finite_e.size else 0.0
    flat_a, flat_e = a.real.ravel(), e.real.ravel()
    if not (np.isfinite(flat_a).all() and np.isfinite(flat_e).all()):
        cosine = float("nan")
    else:
        norms = float(np.linalg.norm(flat_a) * np.linalg.norm(flat_e))
        both_zero = not flat_a.any() and not flat_e.any()
        cosine = 1.0 if both_zero else (float(flat_a @ flat_e) / norms if norms else 0.0)
    return max_abs, scale, bad, cosine


def check_output(
    name: str, actual: Any, expected: Any, tolerance: dict[str, float] | None = None
) -> OutputCheck:
    """Compare one output with its expected value.

    Floats must meet `tolerance` (see effective_tolerance; NaN matches NaN and inf matches the
    same inf); integers, bools and strings must be equal. Sequences compare element by element.

    Args:
        name: The output's name, for the record.
        actual: What the model computed.
        expected: The reference value.
        tolerance: Criteria; defaults to DEFAULT_TOLERANCE (rtol 1e-3, atol 1e-3).
    """
    tolerance = effective_tolerance(tolerance)
    pairs, failure = _pairs(actual, expected)
    if failure:
        return OutputCheck(name, None, None, None, False, failure)
    atol, rtol = tolerance.get("atol", 0.0), tolerance.get("rtol", 0.0)
    elementwise = "atol" in tolerance or "rtol" in tolerance
    max_abs, scale, cosines, failures = 0.0, 0.0, [], []
    numeric = True
    for a, e in pairs:
        if _is_float(e.dtype) or _is_float(a.dtype):
            err, ref_scale, bad, cosine = _float_errors(a, e, atol, rtol)
            cosines.append(cosine)
            if elementwise and bad:
                failures.append(
                    f"{bad} of {e.size} elements beyond atol {atol:g} + rtol {rtol:g} "
                    f"(max abs error {err:.3g})"
                )
        elif e.dtype.kind in "biu" and a.dtype.kind in "biu":
            diff = np.abs(a.astype(np.float64) - e.astype(np.float64))
            err, ref_scale = float(diff.max(initial=0.0)), float(np.abs(e).max(initial=0))
            if err:
                count = int(np.count_nonzero(diff))
                failures.append(
                    f"{count} of {e.size} {e.dtype} elements differ (exact match needed)"
                )
        else:
            numeric = False
            err, ref_scale = 0.0, 0.0
            if not np.array_equal(a, e):
                count = int(np.count_nonzero(a != e))
                failures.append(f"{count} of {e.size} elements differ (exact match needed)")
        max_abs, scale = max(max_abs, err), max(scale, ref_scale)

    cosine = min(cosines, key=lambda c: -np.inf if np.isnan(c) else c) if cosines else None
    if cosine is not None and "min_cosine" in tolerance and not cosine >= tolerance["min_cosine"]:
        failures.append(f"cosine {cosine:.5f} below {tolerance['min_cosine']:g}")
    return OutputCheck(
        name=name,
        max_abs_err=max_abs if numeric else None,
        max_rel_err=(max_abs / scale if scale else max_abs) if numeric else None,
        cosine=cosine,
        passed=not failures,
        failure="; ".join(failures),
    )


def run_test(
    opened: OpenedSession, test: ZooTest, tolerance: dict[str, float] | None
) -> ZooTestResult:
    """Run one test on an open session and check every expected output."""
    try:
        actual = opened.run_named(test.inputs)
    except Exception as error:  # the runtime's error types are classified, never re-raised
        return ZooTestResult(
            test.name, test.matched_by, classify_failure(error, "run"), reason=first_line(error)
        )
    checks = []
    for name, expected in test.outputs.items():
        if name not in actual:
            checks.append(
                OutputCheck(name, None, None, None, False, "the model has no such output")
            )
        else:
            checks.append(check_output(name, actual[name], expected, tolerance))
    status = PASS if all(check.passed for check in checks) else MISMATCH
    return ZooTestResult(test.name, test.matched_by, status, checks)


def validate_tests(
    model_path: str | Path,
    tests: list[ZooTest],
    tolerance: dict[str, float] | None = None,
    provider: str = "cpu",
) -> ZooValidation:
    """Run `tests` on the model at `model_path` and give the verdict.

    The model may be a variant (fp16, int8) of the one the tests were written for, as long as
    it keeps the input and output names. A model the runtime cannot load, an operator without
    a kernel and a run that fails are classified in the result, never raised.

    Args:
        model_path: The .onnx file to run.
        tests: The reference tests.
        tolerance: Criteria (see effective_tolerance); defaults to rtol 1e-3, atol 1e-3.
        provider: cpu, cuda or tensorrt. Defaults to cpu.

    Raises:
        ProviderUnavailable: When the provider cannot run on this host.
    """
    applied = effective_tolerance(tolerance)
    try:
        opened = open_session(model_path, provider)
    except ProviderUnavailable:
        raise
    except Exception as error:  # any load failure is a verdict on the model, not a crash
        return ZooValidation(
            str(model_path), classify_failure(error, "load"), first_line(error), [], applied
        )
    results = [run_test(opened, test, applied) for test in tests]
    failed = next((result for result in results if result.status != PASS), None)
    if failed is None:
        return ZooValidation(str(model_path), PASS, "", results, applied)
    reason = failed.reason or next(c.failure for c in failed.outputs if not c.passed)
    return ZooValidation(
        str(model_path), failed.status, f"{failed.test}: {reason}", results, applied
    )


def validate_model(
    path: str | Path,
    tolerance: dict[str, float] | None = None,
    provider: str = "cpu",
    trust_npz: bool = False,
) -> ZooValidation:
    """Validate a Model Zoo directory (or .onnx file with tests beside it) against its tests.

    Args:
        path: The directory or .onnx file.
        tolerance: Criteria (see effective_tolerance); defaults to rtol 1e-3, atol 1e-3.
        provider: cpu, cuda or tensorrt. Defaults to cpu.
        trust_npz: Let every .npz of the model unpickle object arrays. Defaults to False.

    Raises:
        FileNotFoundError, BrokenTestData: When the model or its tests cannot be used; the
            message names the file.
        ProviderUnavailable: When the provider cannot run on this host.
    """
    zoo = find_zoo_model(path)
    try:
        signature = GraphSignature.of(zoo.model)
    except (DecodeError, OSError, ValueError) as error:
        reason = f"onnx cannot read it: {first_line(error)}"
        return ZooValidation(
            str(zoo.model), NOT_LOADABLE, reason, [], effective_tolerance(tolerance)
        )
    trusted = [p.name for p in zoo.npz_files] if trust_npz else []
    tests = read_tests(zoo, signature, trusted)
    return validate_tests(zoo.model, tests, tolerance, provider)


def validate_variant(
    source: str | Path,
    variant_path: str | Path,
    tolerance: dict[str, float] | None = None,
    trusted_npz: Collection[str] = (),
) -> ZooValidation:
    """Validate a variant (fp32 copy, fp16, int8) of the zoo model at `source` on the CPU
    against the source's tests, read and mapped with the source's own graph.

    Raises:
        FileNotFoundError, BrokenTestData: When the source or its tests cannot be used.
    """
    zoo = find_zoo_model(source)
    tests = read_tests(zoo, GraphSignature.of(zoo.model), trusted_npz)
    return validate_tests(variant_path, tests, tolerance, "cpu")


def stack_inputs(tests: list[ZooTest]) -> dict[str, np.ndarray]:
    """Every test's inputs concatenated along axis 0, taken as the batch axis: the samples a
    study calibrates and times on. Tests whose inputs differ from the first test's in dtype or
    in any axis but the first are left out, with a warning.

    Raises:
        ValueError: When an input is not a tensor of at least one axis.
    """
    first = tests[0].inputs
    for name, value in first.items():
        if not isinstance(value, np.ndarray) or value.ndim == 0:
            raise ValueError(
                f"input '{name}' is not a tensor with a batch axis; the study stacks tensor "
                "inputs along axis 0"
            )
    kept = []
    for test in tests:
        fits = all(
            isinstance(value, np.ndarray)
            and value.dtype == first[name].dtype
            and value.shape[1:] == first[name].shape[1:]
            for name, value in test.inputs.items()
        )
        if fits:
            kept.append(test)
        else:
            log.warning(
                "%s: inputs differ in shape or dtype from %s; left out", test.name, tests[0].name
            )
    return {name: np.concatenate([test.inputs[name] for test in kept]) for name in first}


def check_rows(record: dict) -> list[dict]:
    """One row per test of a zoo parity record (see ZooValidation.parity_record), for reports:
    model, test, variant, inputs matched by, status, max abs and rel error, failing outputs.
    A model that did not load gets one row for all its tests."""

    def row(test: str, matched_by: str, status: str, errors, relative, failures: str) -> dict:
        return {
            "model": record["model"],
            "test": test,
            "variant": record["variant"],
            "matched_by": matched_by,
            "status": status,
            "max_abs_err": max(errors, default=None),
            "max_rel_err": max(relative, default=None),
            "failures": failures,
        }

    rows = []
    for test in record.get("tests", []):
        outputs = test["outputs"]
        rows.append(
            row(
                test["test"],
                test["matched_by"],
                test["status"],
                [o["max_abs_err"] for o in outputs if o["max_abs_err"] is not None],
                [o["max_rel_err"] for o in outputs if o["max_rel_err"] is not None],
                test["reason"]
                or "; ".join(f"{o['name']}: {o['failure']}" for o in outputs if o["failure"]),
            )
        )
    return rows or [row("(all)", "", record["status"], [], [], "; ".join(record["failures"]))]
