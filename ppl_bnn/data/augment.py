"""Data augmentation for images: random crop after 4-pixel padding, and horizontal flip.

The original code uses no augmentation anywhere; the paper argues that the cold-posterior
effect is largely an artifact of it (Izmailov et al. 2021, Sec. 6). Both uses are opt-in:

* **minibatch methods** (``--data_augmentation``): :func:`augment_images` draws a fresh
  crop offset and flip per example from the step's key, inside the jitted step;
* **full-batch HMC** (``--num_augmented_copies=K``): a likelihood needs a fixed dataset,
  so :func:`with_augmented_copies` appends ``K`` augmented copies of the training images,
  drawn once from the run's seed. The training set then has ``(K + 1) N`` examples: the
  likelihood counts each image ``K + 1`` times, which is exactly the "augmented data as
  more data" view under which augmentation sharpens the posterior.

Padding is with zeros in the normalised space the images already live in (the training
mean colour), not black: the images reach this module already normalised.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np

from ppl_bnn.data import Dataset
from ppl_bnn.types import PRNGKey

__all__ = ["augment_images", "check_augmentable", "with_augmented_copies"]


def augment_images(
    rng_key: PRNGKey, x: jax.Array, *, padding: int = 4, flip: bool = True
) -> jax.Array:
    """Randomly crop (after zero padding by ``padding`` pixels) and flip a batch of images.

    Args:
        rng_key: one key for the whole batch; each example gets its own offsets and flip.
        x: images ``(batch, height, width, channels)``.
        padding: pixels of zero padding on each side before the crop; offsets are uniform
            in ``0..2 * padding`` so the identity crop (offset ``padding``) is one of them.
        flip: also mirror each image left-right with probability 1/2.

    Returns:
        An array of the same shape and dtype. Jit-able; the result is a deterministic
        function of ``rng_key`` and ``x``.
    """
    if x.ndim != 4:
        raise ValueError(f"augment_images needs images (batch, H, W, C), got shape {x.shape}")
    n, h, w, _ = x.shape
    key_crop, key_flip = jax.random.split(rng_key)
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key_crop, (n, 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, image.shape[-1]))

    out = jax.vmap(crop)(padded, offsets)
    if flip:
        mirrored = jax.random.bernoulli(key_flip, 0.5, (n,))
        out = jnp.where(mirrored[:, None, None, None], out[:, :, ::-1], out)
    return out


def check_augmentable(dataset: Dataset) -> None:
    """Raise ``ValueError`` unless the training inputs are images ``(N, H, W, C)``."""
    if dataset.x_train.ndim != 4 or not np.issubdtype(dataset.x_train.dtype, np.floating):
        raise ValueError(
            f"data augmentation needs image inputs (N, H, W, C), but {dataset.name} has "
            f"inputs of shape {dataset.x_train.shape[1:]} and dtype {dataset.x_train.dtype}"
        )


def with_augmented_copies(
    dataset: Dataset, num_copies: int, *, seed: int = 0, chunk: int = 4096
) -> Dataset:
    """The dataset with ``num_copies`` augmented copies of its training set appended.

    The original examples come first (so ``--subset_train_to`` and the order of the data
    are unchanged), then copy 1, copy 2, ...; labels are repeated. The copies depend only
    on ``seed``, so a resumed run sees exactly the same training set. The test set is
    never augmented.
    """
    if num_copies < 0:
        raise ValueError(f"--num_augmented_copies must be >= 0, got {num_copies}")
    if num_copies == 0:
        return dataset
    check_augmentable(dataset)
    augment = jax.jit(augment_images)
    base = jax.random.fold_in(jax.random.key(seed), 0x417567)  # a stream of its own
    x, n = dataset.x_train, len(dataset.x_train)
    copies = [x]
    for c in range(num_copies):
        key = jax.random.fold_in(base, c)
        parts = [
            np.asarray(augment(jax.random.fold_in(key, i), jnp.asarray(x[i : i + chunk])))
            for i in range(0, n, chunk)
        ]
        copies.append(np.concatenate(parts).astype(x.dtype))
    return replace(
        dataset,
        x_train=np.concatenate(copies),
        y_train=np.tile(dataset.y_train, (num_copies + 1,) + (1,) * (dataset.y_train.ndim - 1)),
    )
