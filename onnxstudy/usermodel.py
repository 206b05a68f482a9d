"""The user's own PyTorch model, from a source `python:<file.py>:<callable>`.

The callable is an `nn.Module` subclass or a factory function returning a module; it is
called without arguments after seeding torch, so its initial weights are reproducible. An
optional state-dict file is read with `torch.load(..., weights_only=True)`, which refuses
pickled code: save `model.state_dict()`, not the model. The file is imported as a fresh
module each time, with its own folder on `sys.path` while it loads, so it may import its
neighbours. Every failure a user can cause is a StudyError that says what to change.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from onnxstudy.errors import StudyError
from onnxstudy.runtime import first_line

log = logging.getLogger(__name__)

PYTHON_KIND = "python"
# Element types an example input may have (config `dtype:`), by their numpy names.
INPUT_DTYPES = ("float32", "float16", "float64", "int64", "int32", "bool")
# Keys under which training checkpoints commonly nest the state dict.
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_SHOWN_KEYS = 5


def parse_python_target(target: str, model_name: str) -> tuple[str, str]:
    """Split `<file.py>:<callable>` (what follows `python:`) into file and callable name.

    The callable may be dotted (`Zoo.small`) to reach an attribute of a module-level object.

    Raises:
        StudyError: When there is no `:`, the file does not end in .py, or the callable is
            not a Python name.
    """
    file, sep, name = target.rpartition(":")
    if not sep or not file.endswith(".py") or not all(p.isidentifier() for p in name.split(".")):
        raise StudyError(
            model_name,
            None,
            f"source 'python:{target}' is not understood",
            "write it as python:<file.py>:<callable>, e.g. python:examples/my_model.py:build_model",
        )
    return file, name


def import_user_file(
    file: str | Path, model_name: str, base_dir: str | Path | None = None
) -> ModuleType:
    """Import the Python file `file` (relative to `base_dir`, default the working directory).

    Raises:
        StudyError: When the file does not exist or raises while it is imported (the message
            gives the line of the file where it did).
    """
    path = Path(base_dir or Path.cwd()) / Path(file).expanduser()
    if not path.is_file():
        raise StudyError(
            model_name,
            None,
            f"model file {file} does not exist (looked for {path})",
            "give the .py file's path relative to the folder the study runs in, or absolute",
        )
    safe_name = "".join(c if c.isalnum() else "_" for c in model_name)
    module_name = f"onnxstudy_user_{safe_name}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise StudyError(
            model_name,
            None,
            f"importing {file} failed{_where_in(error, path)}: {type(error).__name__}: {error}",
            "fix the file so that `python " + str(file) + "` runs without error",
        ) from error
    finally:
        sys.path.remove(str(path.parent.resolve()))
    return module


def _where_in(error: BaseException, path: Path) -> str:
    """` at line N` of the last traceback frame inside `path`, or the SyntaxError's line."""
    if isinstance(error, SyntaxError) and error.lineno:
        return f" at line {error.lineno}"
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if Path(frame.filename).resolve() == path.resolve()
    ]
    return f" at line {lines[-1]}" if lines else ""


def build_user_model(
    target: str, model_name: str, base_dir: str | Path | None = None, seed: int = 0
) -> nn.Module:
    """Import the file of `target` and call its callable to get the model, in eval mode.

    Args:
        target: `<file.py>:<callable>`, what follows `python:` in the source.
        model_name: Name of the model in config.yaml, for messages.
        base_dir: Folder relative paths start from. Defaults to the working directory.
        seed: torch's seed before the call, so initial weights are reproducible. Defaults to 0.

    Raises:
        StudyError: When the file or the callable is missing, the callable needs arguments or
            fails, or it returns something other than an `nn.Module`.
    """
    file, name = parse_python_target(target, model_name)
    module = import_user_file(file, model_name, base_dir)
    factory: Any = module
    for part in name.split("."):
        if not hasattr(factory, part):
            raise StudyError(
                model_name,
                None,
                f"{file} has no '{name}'",
                f"name one of its callables: {', '.join(_callables(module)) or 'none found'}",
            )
        factory = getattr(factory, part)
    if not callable(factory):
        raise StudyError(
            model_name,
            None,
            f"'{name}' in {file} is a {type(factory).__name__}, not a class or function",
            "name an nn.Module subclass or a function that returns a module",
        )
    try:
        inspect.signature(factory).bind()
    except TypeError as error:
        raise StudyError(
            model_name,
            None,
            f"'{name}' in {file} cannot be called without arguments ({error})",
            "give its arguments defaults, or add a function without arguments that "
            "builds the model and name that",
        ) from error
    except ValueError:
        pass  # builtins without a signature: let the call decide

    torch.manual_seed(seed)
    try:
        model = factory()
    except Exception as error:
        raise StudyError(
            model_name,
            None,
            f"calling '{name}' in {file} failed{_where_in(error, module_path(module))}: "
            f"{type(error).__name__}: {error}",
            "make the callable build the model without arguments",
        ) from error
    if not isinstance(model, nn.Module):
        raise StudyError(
            model_name,
            None,
            f"'{name}' in {file} returned a {type(model).__name__}, not a torch.nn.Module",
            "return the model object (an nn.Module) from the callable",
        )
    return model.eval()


def module_path(module: ModuleType) -> Path:
    return Path(module.__file__ or "")


def _callables(module: ModuleType) -> list[str]:
    """Classes and functions defined in `module` itself, modules first, sorted."""
    own = [
        (name, value)
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
    ]
    modules = sorted(n for n, v in own if isinstance(v, type) and issubclass(v, nn.Module))
    return modules + sorted(n for n, _ in own if n not in modules)


def load_user_state_dict(
    model: nn.Module, path: str | Path, model_name: str, base_dir: str | Path | None = None
) -> dict:
    """Load a state-dict file into `model` with `weights_only=True`, all keys required.

    A checkpoint dict holding the state dict under `state_dict`, `model_state_dict` or
    `model` is accepted too (logged).

    Returns:
        {"origin": "file", "path": str, "tensors": int}.

    Raises:
        StudyError: When the file is missing, holds pickled objects other than tensors, or
            its keys or shapes do not fit the model (the first differing keys are named).
    """
    path = Path(base_dir or Path.cwd()) / Path(path).expanduser()
    if not path.is_file():
        raise StudyError(
            model_name,
            None,
            f"weights file {path} does not exist",
            "set `weights:` to a file written with torch.save(model.state_dict(), path)",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise StudyError(
            model_name,
            None,
            f"{path} is not a plain state dict ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0]})",
            "save the weights with torch.save(model.state_dict(), path); "
            "a whole pickled model is refused because loading it would run code",
        ) from error
    state = _unnest(state, path, model_name)
    check_state_fits(model, state, path, model_name)
    model.load_state_dict(state)
    log.info("loaded %d tensors from %s", len(state), path)
    return {"origin": "file", "path": str(path), "tensors": len(state)}


def _unnest(state: Any, path: Path, model_name: str) -> Mapping[str, torch.Tensor]:
    if isinstance(state, Mapping) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        for key in _NESTED_STATE_KEYS:
            if isinstance(state.get(key), Mapping):
                log.info("%s: using the state dict under '%s'", path, key)
                return state[key]
    if not isinstance(state, Mapping):
        raise StudyError(
            model_name,
            None,
            f"{path} holds a {type(state).__name__}, not a state dict",
            "save the weights with torch.save(model.state_dict(), path)",
        )
    return state


def check_state_fits(
    model: nn.Module, state: Mapping[str, Any], path: str | Path, model_name: str
) -> None:
    """Compare a state dict's keys and shapes with the model's before loading it.

    Raises:
        StudyError: Naming up to five missing keys, unexpected keys and shape mismatches.
    """
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state
        and isinstance(state[key], torch.Tensor)
        and tuple(state[key].shape) != tuple(value.shape)
    ]
    problems = []
    for label, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape (file vs model)", mismatched),
    ):
        if items:
            shown = ", ".join(items[:_SHOWN_KEYS]) + (" ..." if len(items) > _SHOWN_KEYS else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise StudyError(
            model_name,
            None,
            f"the state dict in {path} does not fit the model ({'; '.join(problems)})",
            "save the state dict from the same class built with the same arguments",
        )


def load_user_model(
    target: str,
    model_name: str,
    weights: str | Path | None = None,
    base_dir: str | Path | None = None,
    seed: int = 0,
) -> tuple[nn.Module, dict]:
    """Build the user's model and load its weights when a file is given.

    Returns:
        (model in eval mode, record): origin `file` (with path and tensors) or `seeded`
        (the callable's own initialisation after torch.manual_seed(seed)), plus parameters
        (count) and the class name.

    Raises:
        StudyError: See `build_user_model` and `load_user_state_dict`.
    """
    model = build_user_model(target, model_name, base_dir, seed)
    if weights is not None:
        record = load_user_state_dict(model, weights, model_name, base_dir)
    else:
        record = {"origin": "seeded", "seed": seed}
    record["class"] = type(model).__name__
    record["parameters"] = sum(p.numel() for p in model.parameters())
    return model.eval(), record


def check_forward(model: nn.Module, inputs: np.ndarray, model_name: str) -> None:
    """Run `model` on two of its samples in PyTorch, before anything is built from it.

    A forward that fails on the configured input, or that does not give one tensor with the
    batch axis first, would otherwise fail later in every stage with PyTorch's own words.

    Raises:
        StudyError: Naming the input's shape and dtype and what to change.
    """
    batch = inputs[:2]
    given = f"[{', '.join(str(d) for d in batch.shape)}] {batch.dtype}"
    try:
        with torch.inference_mode():
            output = model(torch.from_numpy(batch))
    except Exception as error:
        source = Path(inspect.getsourcefile(type(model)) or "")
        where = _where_in(error, source)
        where = f"{where} of {source.name}" if where else ""
        raise StudyError(
            model_name,
            None,
            f"the model fails in PyTorch on its samples, {given}{where}: "
            f"{type(error).__name__}: {first_line(error)}",
            "set `input_shape:` (one sample, without the batch axis) and `dtype:` to what "
            "forward takes, or a `dataset:` whose samples it takes",
        ) from error
    if not isinstance(output, torch.Tensor):
        raise StudyError(
            model_name,
            None,
            f"forward returns a {type(output).__name__}, not one tensor",
            "return one tensor (e.g. the logits), or name a callable that wraps the model in "
            "a module whose forward does",
        )
    if output.dim() == 0 or output.shape[0] != len(batch):
        raise StudyError(
            model_name,
            None,
            f"forward maps input {given} to shape {list(output.shape)}, without the batch axis "
            "first",
            "keep the batch axis first in the output (e.g. flatten with start_dim=1)",
        )


def input_dtype(name: str, model_name: str) -> np.dtype:
    """The numpy dtype of config `dtype:` (float32, float16, float64, int64, int32, bool).

    Raises:
        StudyError: For any other name.
    """
    if name not in INPUT_DTYPES:
        raise StudyError(
            model_name,
            None,
            f"input dtype '{name}' is not supported",
            f"set `dtype:` to one of {', '.join(INPUT_DTYPES)}",
        )
    return np.dtype(name)


def example_input(
    input_shape: tuple[int, ...], dtype: str, batch: int = 2, seed: int = 0, high: int = 2
) -> np.ndarray:
    """A seeded stand-in input [batch, *input_shape] for models no shipped dataset fits.

    Floats are standard normal, integers uniform in [0, high), bools fair coin flips.
    Real samples (the `digits` or `photos` datasets) are better wherever they fit: parity on
    noise says little about the inputs the model will see.

    Args:
        input_shape: Shape of one sample, without the batch axis.
        dtype: One of INPUT_DTYPES.
        batch: Number of samples. Defaults to 2.
        seed: Seed of the generator. Defaults to 0.
        high: Exclusive upper bound of integer values (e.g. a vocabulary size). Defaults to 2.
    """
    rng = np.random.default_rng(seed)
    shape = (batch, *input_shape)
    kind = np.dtype(dtype)
    if kind == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(kind, np.integer):
        return rng.integers(0, high, size=shape).astype(kind)
    return rng.standard_normal(shape).astype(kind)
