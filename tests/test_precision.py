"""fp16 conversion and repair, static int8 recipes and dynamic int8, on models that classify
scikit-learn's digits (a trained CNN and random-feature MLPs fitted by least squares)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxstudy.config import resolve_model
from onnxstudy.data import digits_split
from onnxstudy.errors import StudyError
from onnxstudy.fidelity import reference_evaluator_outputs
from onnxstudy.onnxfile import external_data_files, save_onnx
from onnxstudy.precision import (
    check_int8_recipe,
    convert_to_fp16,
    gemm_as_matmul,
    plan_int8_dynamic,
    quantize_int8_dynamic,
    quantize_int8_static,
    run_model,
)

FP16_TOLERANCE = {"min_cosine": 0.999}


@pytest.fixture(scope="module")
def digits():
    """(train_x, train_y, test_x, test_y) of the study's digits split, images [N, 1, 8, 8]."""
    return digits_split(0)


def save(nodes, initializers, path, outputs=("logits",), width=10):
    graph = helper.make_graph(
        nodes,
        "digits",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 1, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, width]) for o in outputs],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def fit_mlp(digits, hidden=128, seed=0):
    """Random ReLU features of the pixels and a least-squares read-out of the one-hot labels."""
    train_x, train_y, _, _ = digits
    x = train_x.reshape(len(train_x), -1)
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 0.5, (64, hidden)).astype(np.float32)
    b1 = rng.normal(0.0, 0.5, hidden).astype(np.float32)
    features = np.maximum(x @ w1 + b1, 0)
    design = np.c_[features, np.ones(len(features))]
    readout, *_ = np.linalg.lstsq(design, np.eye(10)[train_y], rcond=None)
    return {"w1": w1, "b1": b1, "w2": readout[:-1], "b2": readout[-1]}


def mlp_model(digits, path, gemm=False, cast=False):
    """The MLP as MatMul + Add (or Gemm) nodes; `cast` adds an explicit Cast to float."""
    weights = fit_mlp(digits)
    nodes = [helper.make_node("Flatten", ["image"], ["pixels"], name="flatten")]
    if gemm:
        weights["w2t"] = weights.pop("w2").T
        nodes += [
            helper.make_node("Gemm", ["pixels", "w1", "b1"], ["h"], name="fc1"),
            helper.make_node("Relu", ["h"], ["a"], name="relu"),
            helper.make_node("Gemm", ["a", "w2t", "b2"], ["logits"], name="fc2", transB=1),
        ]
    else:
        nodes += [
            helper.make_node("MatMul", ["pixels", "w1"], ["h0"], name="mm1"),
            helper.make_node("Add", ["h0", "b1"], ["h"], name="add1"),
            helper.make_node("Relu", ["h"], ["a0"], name="relu"),
            helper.make_node("Cast", ["a0"], ["a"], name="to_float", to=TensorProto.FLOAT)
            if cast
            else helper.make_node("Identity", ["a0"], ["a"], name="same"),
            helper.make_node("MatMul", ["a", "w2"], ["l0"], name="mm2"),
            helper.make_node("Add", ["l0", "b2"], ["logits"], name="add2"),
        ]
    return save(nodes, weights, path)


def accuracy(path, digits) -> float:
    _, _, test_x, test_y = digits
    return float((run_model(path, {"image": test_x})[0].argmax(1) == test_y).mean())


@pytest.fixture(scope="module")
def mlp(digits, tmp_path_factory):
    return mlp_model(digits, tmp_path_factory.mktemp("mlp") / "fp32.onnx")


@pytest.fixture(scope="module")
def cnn(digits, tmp_path_factory):
    """The study's DigitsCNN trained for one epoch and exported at opset 17."""
    import torch

    from onnxstudy.builtin import DigitsCNN

    train_x, train_y, _, _ = digits
    torch.manual_seed(0)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
    for start in range(0, len(x), 32):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(
            model(x[start : start + 32]), y[start : start + 32]
        ).backward()
        optimizer.step()
    model.eval()
    path = tmp_path_factory.mktemp("cnn") / "fp32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(
            model,
            (x[:1],),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


# ---------------------------------------------------------------------------------------- fp16


def test_fp16_of_a_plain_mlp_converts_without_repair(mlp, digits, tmp_path):
    train_x, _, _, _ = digits
    record = convert_to_fp16(mlp, tmp_path / "fp16.onnx", train_x[:16], FP16_TOLERANCE, "mlp")
    assert record["status"] == "converted" and record["kept_fp32"] == []
    assert record["fidelity"]["reference_evaluator"]["verdict"] == "pass"
    assert abs(accuracy(tmp_path / "fp16.onnx", digits) - accuracy(mlp, digits)) <= 0.005


def test_fp16_overflow_hidden_by_ort_is_repaired(digits, tmp_path):
    """Squares of pixel values scaled to ~300 overflow fp16: ONNX Runtime's CPU provider
    computes them in fp32 and looks perfect; true fp16 arithmetic gives inf; the repair keeps
    the squaring region in fp32."""
    nodes = [
        helper.make_node("Flatten", ["image"], ["pixels"], name="flatten"),
        helper.make_node("Mul", ["pixels", "gain"], ["scaled"], name="gain"),
        helper.make_node("Mul", ["scaled", "scaled"], ["squares"], name="square"),
        helper.make_node("ReduceMean", ["squares"], ["power"], name="mean", axes=[1]),
        helper.make_node("Sqrt", ["power"], ["rms"], name="root"),
    ]
    src = save(nodes, {"gain": [300.0]}, tmp_path / "fp32.onnx", ("rms",), 1)
    train_x = digits[0]

    record = convert_to_fp16(src, tmp_path / "fp16.onnx", train_x[:16], FP16_TOLERANCE, "power")

    plain, repaired = record["attempts"]
    assert plain["ort_cpu"]["verdict"] == "pass"
    assert plain["reference_evaluator"]["verdict"] == "fail"
    assert "inf or NaN" in " ".join(plain["problems"])
    assert record["status"] == "repaired" and repaired["passed"]
    kept = {k["node"]: k["reason"] for k in record["kept_fp32"]}
    assert "square" in kept and "65504" in kept["square"]
    fp32 = run_model(src, {"image": train_x[:4]})[0]
    true_fp16 = reference_evaluator_outputs(
        onnx.load(tmp_path / "fp16.onnx"), {"image": train_x[:4]}
    )
    assert np.isfinite(true_fp16[0]).all()
    np.testing.assert_allclose(true_fp16[0], fp32, rtol=1e-2)


def test_fp16_constant_beyond_range_is_repaired(digits, tmp_path):
    """A bias of 1e5 added and taken away again: clipped to fp16's 65504 it would change the
    logits; the nodes that see it stay fp32."""
    weights = fit_mlp(digits)
    nodes = [
        helper.make_node("Flatten", ["image"], ["pixels"], name="flatten"),
        helper.make_node("MatMul", ["pixels", "w1"], ["h0"], name="mm1"),
        helper.make_node("Add", ["h0", "b1"], ["h"], name="add1"),
        helper.make_node("Relu", ["h"], ["a"], name="relu"),
        helper.make_node("MatMul", ["a", "w2"], ["l0"], name="mm2"),
        helper.make_node("Add", ["l0", "far"], ["l1"], name="shift"),
        helper.make_node("Sub", ["l1", "far"], ["l2"], name="unshift"),
        helper.make_node("Add", ["l2", "b2"], ["logits"], name="add2"),
    ]
    src = save(nodes, {**weights, "far": [1e5]}, tmp_path / "fp32.onnx")

    record = convert_to_fp16(src, tmp_path / "fp16.onnx", digits[0][:16], FP16_TOLERANCE, "far")

    assert record["status"] == "repaired"
    reasons = {k["node"]: k["reason"] for k in record["kept_fp32"]}
    assert "initializer far" in reasons["shift"] and "unshift" in reasons
    assert abs(accuracy(tmp_path / "fp16.onnx", digits) - accuracy(src, digits)) <= 0.005


def test_fp16_with_a_cast_to_float_loads_after_conversion(digits, tmp_path):
    src = mlp_model(digits, tmp_path / "fp32.onnx", cast=True)

    record = convert_to_fp16(src, tmp_path / "fp16.onnx", digits[0][:16], FP16_TOLERANCE, "cast")

    assert not record["attempts"][0]["loads"]
    assert record["status"] == "repaired"
    assert [k["node"] for k in record["kept_fp32"]] == ["to_float"]
    assert record["kept_fp32_op_types"] == {"Cast": 1}
    assert abs(accuracy(tmp_path / "fp16.onnx", digits) - accuracy(src, digits)) <= 0.005


def test_fp16_that_cannot_be_repaired_is_failed_not_ok(digits, tmp_path):
    """Exact equality (atol 0) cannot hold in fp16, and automatic mixed precision cannot load
    the converter's Cast: the written model is marked failed, with the reason."""
    src = mlp_model(digits, tmp_path / "fp32.onnx", cast=True)
    exact = {"atol": 0.0, "rtol": 0.0}

    record = convert_to_fp16(src, tmp_path / "fp16.onnx", digits[0][:8], exact, "exact")

    assert record["status"] == "failed"
    assert [a["name"] for a in record["attempts"]] == [
        "plain",
        "block-list",
        "auto-mixed-precision",
    ]
    assert "could not be repaired" in record["failure"] and "atol" in record["failure"]
    assert (tmp_path / "fp16.onnx").exists()


def test_fp16_samples_missing_a_graph_input_name_it(mlp, digits, tmp_path):
    with pytest.raises(StudyError) as caught:
        samples = {"wrong_name": digits[0][:8]}
        convert_to_fp16(mlp, tmp_path / "fp16.onnx", samples, FP16_TOLERANCE, "named")
    assert "model 'named'" in str(caught.value) and "image" in str(caught.value)


def test_fp16_settings_errors_name_the_key(mlp, digits, tmp_path):
    with pytest.raises(StudyError, match="reference_sample"):
        convert_to_fp16(mlp, tmp_path / "x.onnx", digits[0], {}, "mlp", {"reference_sample": 1})


# ----------------------------------------------------------------------------------- int8


def digest(record: dict) -> str:
    return record["quantization"]["digest"]


def test_calibration_recipes_change_scales_where_they_should(mlp, digits, tmp_path):
    calibration = digits[0][:32]

    def quantize(name, recipe, samples=calibration):
        return quantize_int8_static(mlp, tmp_path / f"{name}.onnx", samples, recipe, "mlp", name)

    minmax = quantize("int8", {})
    same = quantize("int8_all", {"calibration_samples": 32})
    named = quantize("int8_dict", {}, {"image": calibration})
    percentile = quantize("int8_pt", {"method": "percentile", "percentile": 99.0})
    fewer = quantize("int8_few", {"calibration_samples": 4})
    per_tensor = quantize("int8_pt1", {"per_channel": False})

    assert digest(minmax) == digest(same) == digest(named)
    assert len({digest(r) for r in (minmax, percentile, fewer, per_tensor)}) == 4
    assert percentile["recipe"]["percentile"] == 99.0 and minmax["recipe"]["percentile"] is None
    assert fewer["calibration_samples"] == 4
    for name in ("int8", "int8_pt", "int8_few", "int8_pt1"):
        assert accuracy(tmp_path / f"{name}.onnx", digits) >= accuracy(mlp, digits) - 0.03


@pytest.mark.parametrize(
    ("recipe", "key"),
    [
        ({"method": "kl"}, "method"),
        ({"format": "qdq2"}, "format"),
        ({"per_chanel": True}, "per_chanel"),
        ({"per_channel": "yes"}, "per_channel"),
        ({"activation_type": "int4"}, "activation_type"),
        ({"calibration_samples": 0}, "calibration_samples"),
        ({"percentile": 101}, "percentile"),
        ({"method": "entropy", "num_bins": 16}, "num_bins"),
    ],
)
def test_recipe_errors_name_the_key(recipe, key):
    with pytest.raises(StudyError) as caught:
        check_int8_recipe(recipe, "digits_cnn", "int8_x")
    message = str(caught.value)
    assert f"`{key}`" in message and "int8_x" in message and "Cure:" in message


def test_more_calibration_samples_than_available_names_the_key(mlp, digits, tmp_path):
    with pytest.raises(StudyError, match="calibration_samples"):
        quantize_int8_static(
            mlp, tmp_path / "q.onnx", digits[0][:8], {"calibration_samples": 9}, "mlp"
        )


def test_recipe_variant_without_recipe_names_int8_recipes():
    config = {
        "defaults": {"int8_recipes": {"int8_pt": {"method": "percentile"}}},
        "models": {"m": {"source": "builtin:digits_cnn", "variants": ["fp32", "int8_ent"]}},
    }
    with pytest.raises(ValueError, match="int8_recipes"):
        resolve_model(config, "m")
    config["models"]["m"]["variants"] = ["fp32", "int8_pt"]
    spec = resolve_model(config, "m")
    assert spec.int8_recipe("int8_pt")["method"] == "percentile"
    assert spec.tolerance("int8_pt") == spec.tolerance("int8")


def test_static_int8_of_the_cnn_keeps_accuracy_at_a_third_of_the_size(cnn, digits, tmp_path):
    record = quantize_int8_static(cnn, tmp_path / "int8.onnx", digits[0][:32], {}, "cnn")
    assert record["preprocessed"] and record["recipe"]["activation_type"] == "uint8"
    assert record["size_bytes"] <= 0.3 * cnn.stat().st_size
    assert accuracy(tmp_path / "int8.onnx", digits) >= accuracy(cnn, digits) - 0.01


def test_static_int8_preprocesses_a_model_given_by_a_relative_path(
    cnn, digits, tmp_path, monkeypatch
):
    """The workflow names its files relative to the study folder (results/<model>/fp32.onnx)."""
    shutil.copy(cnn, tmp_path / "fp32.onnx")
    monkeypatch.chdir(tmp_path)
    record = quantize_int8_static("fp32.onnx", "int8.onnx", digits[0][:8], {}, "cnn")
    assert record["preprocessed"], record["preprocess_note"]


def test_per_channel_qdq_on_an_opset_before_13_is_refused_with_the_opset_to_set(
    mlp, digits, tmp_path
):
    model = onnx.load(str(mlp))
    model.opset_import[0].version = 12  # MatMul, Add, Relu, Flatten, Identity: the same at 12
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    with pytest.raises(StudyError) as caught:
        quantize_int8_static(tmp_path / "fp32.onnx", tmp_path / "a.onnx", digits[0][:8], {}, "m")
    assert "added in opset 13; the fp32 model is opset 12" in caught.value.cause
    assert caught.value.cure.startswith("set `opset: 13` or newer")
    assert not (tmp_path / "a.onnx").exists()
    recipe = {"per_channel": False}
    quantize_int8_static(tmp_path / "fp32.onnx", tmp_path / "b.onnx", digits[0][:8], recipe, "m")
    assert accuracy(tmp_path / "b.onnx", digits) >= accuracy(mlp, digits) - 0.02


# ---------------------------------------------------------------------------------- int8dyn


def test_dynamic_int8_plan_skips_a_cnn_unless_forced(cnn, mlp):
    plan = plan_int8_dynamic(cnn, {}, "cnn")
    assert not plan["build"] and "3 Conv" in plan["reason"] and "force" in plan["reason"]
    assert plan_int8_dynamic(cnn, {"force": True}, "cnn")["build"]
    assert plan_int8_dynamic(mlp, {}, "mlp") == {
        "op_counts": {"conv": 0, "matmul_gemm": 2},
        "forced": False,
        "build": True,
        "reason": "",
    }


def test_dynamic_int8_of_a_gemm_mlp_quantizes_its_weights(digits, tmp_path):
    src = mlp_model(digits, tmp_path / "fp32.onnx", gemm=True)
    record = quantize_int8_dynamic(src, tmp_path / "int8dyn.onnx", {}, "gemm_mlp")
    assert record["gemm_rewritten"] == 2
    assert sum(record["integer_ops"].values()) >= 2
    assert record["size_bytes"] < 0.5 * src.stat().st_size
    assert accuracy(tmp_path / "int8dyn.onnx", digits) >= accuracy(src, digits) - 0.01
    json.dumps(record)


# ------------------------------------------------------------------------------- summary


def test_summary_reports_failed_skipped_and_identical_variants(cnn, digits, tmp_path):
    """Records made by the stages themselves, joined by the summary: an fp16 that could not be
    repaired is `failed`, an int8dyn its plan skipped is `skipped`, two int8 recipes with
    identical scales are said to make no difference, and the trade-off names the fastest."""
    import pandas as pd

    from onnxstudy.bench import benchmark_cell
    from onnxstudy.fidelity import compare_outputs, top1_accuracy
    from onnxstudy.jobs import write_json
    from onnxstudy.precision import skipped_row
    from onnxstudy.report import build_summary, render_report, write_csv_atomically

    train_x, _, test_x, test_y = digits
    model = tmp_path / "results" / "m"
    (model / "parity").mkdir(parents=True)
    (model / "accuracy").mkdir()
    (model / "bench").mkdir()
    src = mlp_model(digits, model / "fp32.onnx", cast=True)
    exact = {"atol": 0.0, "rtol": 0.0}
    records = {
        "fp16": convert_to_fp16(src, model / "fp16.onnx", train_x[:8], exact, "m"),
        "int8": quantize_int8_static(src, model / "int8.onnx", train_x[:16], {}, "m"),
        "int8_same": quantize_int8_static(
            src, model / "int8_same.onnx", train_x[:32], {"calibration_samples": 16}, "m"
        ),
    }
    reference = run_model(src, {"image": test_x})[0]
    bench = []
    for variant in ("fp32", "fp16", "int8", "int8_same"):
        if variant in records:
            write_json(model / f"{variant}.json", records[variant])
        outputs = run_model(model / f"{variant}.onnx", {"image": test_x})[0]
        parity = compare_outputs(outputs, reference, {"min_top1_agreement": 0.95}).to_dict()
        write_json(model / "parity" / f"{variant}.json", {"method": "ort-cpu", **parity})
        write_json(model / "accuracy" / f"{variant}.json", top1_accuracy(outputs, test_y))
        cell = {"model": "m", "variant": variant, "provider": "cpu", "batch": 1}
        row = benchmark_cell(cell, model / f"{variant}.onnx", None, test_x[:1], 2, 10, 1)
        bench.append(model / "bench" / f"{variant}_cpu_b1.csv")
        write_csv_atomically(pd.DataFrame([row]), bench[-1])
    plan = plan_int8_dynamic(cnn, {}, "m")
    bench.append(model / "skipped.csv")
    write_csv_atomically(pd.DataFrame([skipped_row("m", "int8dyn", "cpu", 1, plan)]), bench[-1])

    summary = build_summary(bench, tmp_path / "results").set_index("variant")

    assert summary.loc["fp16", "status"] == "failed"
    assert "could not be repaired" in summary.loc["fp16", "reason"]
    assert summary.loc["int8dyn", "status"] == "skipped"
    assert "ConvInteger" in summary.loc["int8dyn", "reason"]
    assert (summary.loc[["fp32", "int8", "int8_same"], "status"] == "ok").all()
    assert (
        summary.loc["int8", "quant_params_digest"]
        == summary.loc["int8_same", "quant_params_digest"]
    )
    assert list(summary.index) == ["fp32", "fp16", "int8", "int8_same", "int8dyn"]
    report = render_report(summary.reset_index(), "defaults: {accuracy_budget: 0.01}\n")
    assert "int8 and int8_same have identical scales and zero points" in report
    assert (
        "Trade-off on cpu, batch 1: fastest within budget (accuracy at most 1 point below fp32)"
        in report
    )
    assert "true fp16 arithmetic (onnx reference evaluator" in report
    fastest = report.split("fastest within budget")[1].split("**")[1]
    assert fastest in ("fp32", "int8", "int8_same")


# ------------------------------------------------------------------------------ workflow

PRECISION_STUDY = {
    "seed": 0,
    "defaults": {
        "calibration_samples": 16,
        "evaluation_samples": 16,
        "tolerances": {"fp32": {"atol": 1e-3, "rtol": 1e-3}, "int8": {"min_cosine": 0.98}},
        "int8_recipes": {"int8_pt": {"method": "percentile"}},
    },
    "models": {
        "digits_cnn": {
            "source": "builtin:digits_cnn",
            "variants": ["fp32", "int8", "int8_pt", "int8dyn"],
            "train": {"epochs": 1, "batch_size": 32, "lr": 2e-3},
        },
        "zoo_mlp": {"source": "onnx:zoo/digits_mlp", "variants": ["fp32", "int8dyn"]},
    },
    "benchmark": {"providers": ["cpu"], "batch_sizes": [1], "warmup": 1, "runs": 3},
}


@pytest.mark.workflow
def test_workflow_builds_recipes_and_skips_dynamic_int8_on_a_cnn(tmp_path):
    """int8_pt is a variant of its own; int8dyn is built for the MLP and reaches the summary
    as a `skipped` row for the CNN, decided by its plan checkpoint; a rerun does nothing."""
    import pandas as pd
    import yaml

    from tests.conftest import run_snakemake

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(PRECISION_STUDY))
    run_snakemake(tmp_path, config=config)

    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    rows = summary.set_index(["model", "variant"])
    assert rows.loc[("digits_cnn", "int8dyn"), "status"] == "skipped"
    assert "ConvInteger" in rows.loc[("digits_cnn", "int8dyn"), "reason"]
    assert rows.loc[("zoo_mlp", "int8dyn"), "status"] == "ok"
    assert rows.loc[("digits_cnn", "int8_pt"), "status"] == "ok"
    cnn = tmp_path / "results" / "digits_cnn"
    recipe = json.loads((cnn / "int8_pt.json").read_text())["recipe"]
    assert recipe["method"] == "percentile" and recipe["per_channel"] is True
    assert not (cnn / "int8dyn.onnx").exists()
    report = (tmp_path / "results" / "report.md").read_text()
    assert "Trade-off on cpu, batch 1" in report
    rerun = run_snakemake(tmp_path, "--dry-run", config=config)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


# -------------------------------------------------------------------------- external data


def test_every_precision_stage_keeps_external_data_and_leaves_no_scratch(digits, tmp_path):
    """From an fp32 whose weights are in external data (as past 2 GB) every stage writes its
    variant the same way, the quantizers' own intermediates included, and leaves nothing
    else beside it."""
    train_x, _, _, _ = digits
    inline = mlp_model(digits, tmp_path / "inline.onnx", gemm=True)
    src = tmp_path / "fp32.onnx"
    save_onnx(onnx.load(str(inline)), src, external_data_threshold=0)
    inline.unlink()
    assert external_data_files(src) == [tmp_path / "fp32.onnx.data"]

    fp16 = convert_to_fp16(src, tmp_path / "fp16.onnx", train_x[:16], FP16_TOLERANCE, "mlp")
    int8 = quantize_int8_static(src, tmp_path / "int8.onnx", train_x[:32], {}, "mlp")
    int8dyn = quantize_int8_dynamic(src, tmp_path / "int8dyn.onnx", {}, "mlp")
    assert fp16["status"] == "converted" and fp16["kept_fp32"] == []
    assert int8["preprocessed"] and int8dyn["preprocessed"]
    for variant in ("fp16", "int8", "int8dyn"):
        path = tmp_path / f"{variant}.onnx"
        assert external_data_files(path) == [tmp_path / f"{variant}.onnx.data"]
        assert accuracy(path, digits) >= accuracy(src, digits) - 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{v}.onnx{suffix}" for v in ("fp32", "fp16", "int8", "int8dyn") for suffix in ("", ".data")
    )


def test_gemm_rewrite_leaves_no_second_copy_of_the_weights(digits, tmp_path):
    model = onnx.load(str(mlp_model(digits, tmp_path / "fp32.onnx", gemm=True)))
    weight_bytes = sum(init.ByteSize() for init in model.graph.initializer)
    assert gemm_as_matmul(model) == 2
    assert [node.op_type for node in model.graph.node] == [
        "Flatten",
        "MatMul",
        "Add",
        "Relu",
        "MatMul",
        "Add",
    ]
    names = {init.name for init in model.graph.initializer}
    assert "w1" not in names and "w2t" not in names and {"b1", "b2"} <= names
    assert abs(sum(init.ByteSize() for init in model.graph.initializer) - weight_bytes) < 200
