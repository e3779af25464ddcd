"""Random crop (pad 4) and flip: shapes, determinism, and that every output is a real crop/flip."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from ppl_bnn.config import HMCConfig
from ppl_bnn.data import Dataset, load_dataset
from ppl_bnn.data.augment import augment_images, with_augmented_copies
from ppl_bnn.declare.problem import build_problem


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(32, 8, 6, 3)).astype(np.float32)


def _crops(image, padding):
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    h, w = image.shape[:2]
    return {
        (i, j): padded[i : i + h, j : j + w]
        for i in range(2 * padding + 1)
        for j in range(2 * padding + 1)
    }


def test_shape_dtype_and_determinism(images):
    key = jax.random.key(3)
    out = augment_images(key, images)
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out, augment_images(key, images))
    np.testing.assert_array_equal(out, jax.jit(augment_images)(key, images))
    assert not np.array_equal(out, augment_images(jax.random.key(4), images))


def test_identity_without_padding_or_flip(images):
    np.testing.assert_array_equal(
        augment_images(jax.random.key(0), images, padding=0, flip=False), images
    )


def test_flip_is_a_left_right_mirror(images):
    out = np.asarray(augment_images(jax.random.key(1), images, padding=0))
    flipped = [np.array_equal(o, x[:, ::-1]) for o, x in zip(out, images, strict=True)]
    kept = [np.array_equal(o, x) for o, x in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 4 <= sum(flipped) <= 28  # 32 fair coins: outside this range has p < 2e-4


def test_crop_is_a_window_of_the_zero_padded_image(images):
    out = np.asarray(augment_images(jax.random.key(2), images, padding=4, flip=False))
    offsets = []
    for o, x in zip(out, images, strict=True):
        found = [k for k, c in _crops(x, 4).items() if np.array_equal(o, c)]
        assert found, "output is not a crop of the padded image"
        offsets.append(found[0])
    assert len(set(offsets)) > 5  # offsets are drawn per example (81 possible)


def test_augmented_copies(images):
    labels = np.arange(32, dtype=np.int32) % 10
    ds = Dataset("toy", images, labels, images[:4], labels[:4], "classification", num_classes=10)
    aug = with_augmented_copies(ds, 2, seed=0)
    assert aug.x_train.shape == (96, 8, 6, 3)
    np.testing.assert_array_equal(aug.x_train[:32], images)  # originals first, unchanged
    np.testing.assert_array_equal(aug.y_train, np.tile(labels, 3))
    assert not np.array_equal(aug.x_train[32:64], aug.x_train[64:])  # copies differ
    np.testing.assert_array_equal(aug.x_test, ds.x_test)  # the test set is never augmented
    np.testing.assert_array_equal(with_augmented_copies(ds, 2, seed=0).x_train, aug.x_train)
    assert not np.array_equal(with_augmented_copies(ds, 2, seed=1).x_train, aug.x_train)
    assert with_augmented_copies(ds, 0) is ds
    tokens = Dataset(
        "text",
        labels[:, None].repeat(5, 1),
        labels,
        labels[:2, None],
        labels[:2],
        "classification",
        num_classes=10,
    )
    with pytest.raises(ValueError, match="image inputs"):
        with_augmented_copies(tokens, 1)


def test_build_problem_appends_copies(tmp_path):
    cfg = HMCConfig(
        dir=str(tmp_path), dataset_name="digits", num_augmented_copies=2, subset_train_to=50
    )
    problem = build_problem(cfg)
    assert problem.dataset.x_train.shape == (150, 8, 8, 1)
    assert problem.train.num_examples == 150
    np.testing.assert_array_equal(
        problem.dataset.x_train[:50], load_dataset("digits", subset_train_to=50).x_train
    )
    assert (
        build_problem(HMCConfig(dir=str(tmp_path), dataset_name="digits")).train.num_examples
        == 1437
    )  # off by default
