"""onnxstudy.detection: seeded detectors that say something, dynamic-size export, box parity."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from onnxstudy.detection import (
    CHECK_SIZES,
    EXPORT_SIZE,
    build_detector,
    check_detector_data_dependence,
    compare_detections,
    detection_samples,
    export_detector,
    freeze_batchnorm,
    load_detector,
    match_detections,
    photo_images,
    prepare_detector,
    seed_detection_heads,
)
from onnxstudy.errors import StudyError

NAME = "fasterrcnn_mobilenet_v3_large_320_fpn"
FASTER_RCNN_HEADS = [
    "rpn.head.cls_logits",
    "rpn.head.bbox_pred",
    "roi_heads.box_predictor.cls_score",
    "roi_heads.box_predictor.bbox_pred",
]


@pytest.fixture(scope="module")
def prepared():
    return prepare_detector(NAME, seed=0, model_name="detector")


@pytest.fixture(scope="module")
def exported(prepared, tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "fp32.onnx"
    return path, export_detector(prepared[0], path, "detector")


@pytest.fixture(scope="module")
def reference(prepared):
    """PyTorch's detections on the first sample photo at the export size."""
    with torch.inference_mode():
        return [t.numpy() for t in prepared[0](torch.from_numpy(photo_images(EXPORT_SIZE)[0]))]


def test_seeded_heads_spread_the_scores(prepared, reference):
    _, record = prepared
    assert record["origin"] == "seeded-heads-bn-reestimated"
    assert record["redrawn_layers"] == FASTER_RCNN_HEADS
    assert record["batchnorm_layers"] == 46
    boxes, scores, labels = reference
    # 100 kept boxes (the detector's cap) whose scores are far from tied.
    assert len(boxes) == record["probe_detections"] == 100
    assert scores.max() - scores.min() > 0.3 and len(np.unique(scores)) == 100
    assert len(np.unique(labels)) > 10


def test_the_export_has_dynamic_height_and_width(exported):
    path, record = exported
    proto = onnx.load(path)
    [image] = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == [3, "height", "width"]
    assert [o.name for o in proto.graph.output] == ["boxes", "scores", "labels"]
    assert record["export_size"] == [320, 320] and record["opset"] == 17
    assert record["nodes"] > 1000
    assert {"NonZero", "RoiAlign", "TopK", "If"} <= set(record["op_types"])
    assert record["trace_warnings"], "torchvision's detectors warn while being traced"


def test_detections_match_at_the_export_size_and_three_others(prepared, exported):
    path, _ = exported
    # 200x200 is added on purpose: ONNX Runtime's Resize makes it 319 px wide where PyTorch
    # makes it 320 (scale 1.6), so every box moves. Sizes like this are why the check exists.
    result = compare_detections(prepared[0], path, sizes=[*CHECK_SIZES, (200, 200)])
    sizes = [(s["height"], s["width"]) for s in result["sizes"]]
    assert sizes == [EXPORT_SIZE, *CHECK_SIZES, (200, 200)]
    assert [s["role"] for s in result["sizes"]] == ["export"] + ["other"] * 4
    # The default sizes are non-square, off the 32 grid, smaller and larger than the export.
    assert any(h != w for h, w in CHECK_SIZES) and any(h % 32 and w % 32 for h, w in CHECK_SIZES)
    assert min(min(s) for s in CHECK_SIZES) < 320 < max(max(s) for s in CHECK_SIZES)
    for size in result["sizes"][:4]:
        assert size["verdict"] == "pass", size
        assert size["images"] == 2 and size["reference_boxes"] == 200
        assert size["matched"] + size["unmatched_reference"] == 200
        unmatched = size["unmatched_reference"] + size["unmatched_candidate"]
        assert unmatched == size["unmatched_at_cutoff"]
        assert size["min_matched_iou"] >= 0.99 and size["label_mismatches"] == 0
    odd = result["sizes"][4]
    assert odd["verdict"] == "fail" and odd["unmatched_reference"] > 100
    assert result["verdict"] == "fail"
    assert result["failures"] and all(f.startswith("200x200: ") for f in result["failures"])
    assert json.loads(json.dumps(result)) == result


def test_matching_ignores_order_and_counts_what_does_not_match(reference):
    boxes, scores, labels = reference
    order = np.random.default_rng(0).permutation(len(boxes))
    shuffled = match_detections(reference, (boxes[order], scores[order], labels[order]))
    assert shuffled["matched"] == 100 and shuffled["unmatched_candidate"] == 0
    assert shuffled["max_score_abs_err"] == 0.0 and shuffled["min_matched_iou"] == 1.0

    moved, relabelled = boxes.copy(), labels.copy()
    moved[:3] += 8.0
    relabelled[3:5] = (relabelled[3:5] + 1) % 91
    result = match_detections(reference, (moved, scores, relabelled))
    assert result["unmatched_reference"] == result["unmatched_candidate"] == 3
    assert result["matched"] == 97 and result["label_mismatches"] == 2
    assert result["unmatched_at_cutoff"] == 0

    # The lowest-scored box missing on one side sits at the cut-off: it is counted apart.
    top = np.argsort(scores)[1:]
    result = match_detections(reference, (boxes[top], scores[top], labels[top]))
    assert result["unmatched_reference"] == result["unmatched_at_cutoff"] == 1


def test_weights_round_trip_into_the_frozen_architecture(prepared, reference, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(prepared[0].detector.state_dict(), path)
    loaded = load_detector(NAME, path, "detector")
    with torch.inference_mode():
        again = loaded(torch.from_numpy(photo_images(EXPORT_SIZE)[0]))
    for before, after in zip(reference, again, strict=True):
        np.testing.assert_array_equal(before, after.numpy())


def test_weights_of_another_detector_are_refused(tmp_path):
    other = build_detector("ssdlite320_mobilenet_v3_large", 0, "other")
    torch.save(other.detector.state_dict(), tmp_path / "ssd.pt")
    with pytest.raises(StudyError, match="does not fit the model .* missing: backbone"):
        load_detector(NAME, tmp_path / "ssd.pt", "detector")


def test_any_torchvision_detector_is_built_by_name():
    model = build_detector("fasterrcnn_resnet50_fpn", 1, "r50")
    assert seed_detection_heads(model, 1) == FASTER_RCNN_HEADS
    assert freeze_batchnorm(model) == 53
    with pytest.raises(StudyError, match="use one of: .*fasterrcnn_resnet50_fpn"):
        build_detector("fasterrcnn_resnet18", 0, "bad")


def test_the_export_agrees_with_pytorch_on_other_images_at_the_export_size(prepared, exported):
    path, _ = exported
    result = check_detector_data_dependence(prepared[0], path)
    assert result["verdict"] == "consistent" and result["diverging_inputs"] == []
    assert [case["inputs"] for case in result["cases"]] == [
        "photo 2, 320x320",
        "darker x0.5, 320x320",
        "inverted 1-x, 320x320",
        "mirrored, 320x320",
    ]
    for case in result["cases"]:
        assert case["reference_boxes"] == case["matched"] == 100, case
    assert json.loads(json.dumps(result)) == result


def test_detector_samples_are_the_photos_whole_in_the_unit_range():
    samples = detection_samples((241, 305))
    assert samples.evaluation_x.shape == (2, 3, 241, 305)
    assert samples.evaluation_x.dtype == np.float32
    assert 0.0 <= samples.evaluation_x.min() < 0.05 and 0.95 < samples.evaluation_x.max() <= 1.0
    assert samples.train_x is None and samples.evaluation_y is None
