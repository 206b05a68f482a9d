"""Real samples for training, calibration and evaluation, from data shipped in packages.

`digits` is scikit-learn's handwritten digits (8x8, labelled, fixed stratified split).
`photos` is random crops of scikit-learn's two sample photographs, normalised with the
ImageNet mean and standard deviation; they carry no labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
DIGITS_TEST_FRACTION = 0.2


# One model input as an array, or several (Model Zoo models) as a dict of input name -> array.
Inputs = np.ndarray | dict[str, np.ndarray]


@dataclass
class Samples:
    """The samples of one model, with the batch axis first.

    Inputs are one float32 array for PyTorch models, and a dict of graph input name to array
    for Model Zoo models (whose inputs have names, dtypes and counts of their own).

    Attributes:
        train_x, train_y: Training set (builtin models) or images for BatchNorm statistics;
            None for Model Zoo models.
        calibration_x: Inputs int8 calibration reads.
        evaluation_x: Inputs parity, accuracy and timing run on.
        evaluation_y: Ground-truth labels of evaluation_x, or None when there are none.
    """

    train_x: np.ndarray | None
    train_y: np.ndarray | None
    calibration_x: Inputs
    evaluation_x: Inputs
    evaluation_y: np.ndarray | None

    def save(self, path: str | Path) -> None:
        """Write the samples to an .npz file atomically; a dict of inputs is stored as one
        array per input, named `<field>.<input name>`."""
        arrays = {}
        for name, value in vars(self).items():
            if isinstance(value, dict):
                arrays.update({f"{name}.{key}": array for key, array in value.items()})
            elif value is not None:
                arrays[name] = value
        path = Path(path)
        tmp = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Samples:
        """Read samples written by `save` (never unpickles)."""
        fields: dict[str, Any] = {name: None for name in cls.__dataclass_fields__}
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                name, named, input_name = key.partition(".")
                if named:
                    fields[name] = {**(fields[name] or {}), input_name: npz[key]}
                else:
                    fields[name] = npz[key]
        return cls(**fields)


def digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_x, train_y, test_x, test_y) of scikit-learn's digits.

    Images are [N, 1, 8, 8] float32 scaled to [0, 1]; labels int64. The split is stratified
    and fixed by `seed` (20% held out).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=seed
    )
    return train_x, train_y, test_x, test_y


def photo_crops(count: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """Return `count` random crops of scikit-learn's sample photos as [N, 3, H, W] float32.

    Each crop takes a random square of 40-100% of the shorter side, is resized to `size`
    (height, width) bilinearly, flipped at random, and normalised with ImageNet statistics.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    height, width = size
    crops = np.empty((count, 3, height, width), dtype=np.float32)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        side = int(min(photo.shape[:2]) * rng.uniform(0.4, 1.0))
        top = rng.integers(photo.shape[0] - side + 1)
        left = rng.integers(photo.shape[1] - side + 1)
        patch = Image.fromarray(photo[top : top + side, left : left + side])
        patch = np.asarray(patch.resize((width, height), Image.BILINEAR), dtype=np.float32)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        crops[i] = ((patch / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return crops


def make_samples(
    dataset: str,
    input_shape: tuple[int, ...],
    calibration_samples: int,
    evaluation_samples: int,
    seed: int,
) -> Samples:
    """Draw the training, calibration and evaluation samples of one model.

    Args:
        dataset: `digits` or `photos`.
        input_shape: Shape of one sample without the batch axis; photos use its last two axes.
        calibration_samples: Number of calibration inputs (taken from the training side).
        evaluation_samples: Number of evaluation inputs; digits always evaluates on its whole
            held-out split (360 images) so that its accuracy is comparable across runs.
        seed: Seed of the split and of the crops.

    Raises:
        ValueError: For an unknown dataset.
    """
    if dataset == "digits":
        train_x, train_y, test_x, test_y = digits_split(seed)
        rng = np.random.default_rng(seed)
        calibration = train_x[rng.choice(len(train_x), calibration_samples, replace=False)]
        log.info("digits: %d train, %d test images", len(train_x), len(test_x))
        return Samples(train_x, train_y, calibration, test_x, test_y)
    if dataset == "photos":
        size = (int(input_shape[-2]), int(input_shape[-1]))
        # Three disjoint seeds: BatchNorm statistics, calibration and evaluation see other crops.
        train_x = photo_crops(64, size, seed)
        calibration = photo_crops(calibration_samples, size, seed + 1)
        evaluation = photo_crops(evaluation_samples, size, seed + 2)
        log.info("photos: %d crops of %dx%d", 64 + calibration_samples + evaluation_samples, *size)
        return Samples(train_x, None, calibration, evaluation, None)
    raise ValueError(f"dataset '{dataset}' is unknown; use 'digits' or 'photos'")
