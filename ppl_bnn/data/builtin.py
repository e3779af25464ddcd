"""Datasets as numpy arrays plus what the model and metrics need to know about them.

Embedded defaults need no download: ``digits`` (scikit-learn's 8x8 handwritten digits,
shipped inside scikit-learn) and ``synthetic_regression`` (the original's 1-D toy problem,
generated procedurally). The UCI regression benchmarks are read from a folder in the
standard layout (``<name>/data.txt``, ``index_*.txt``): ``--dataset_name=yacht`` with
``--uci_split=i`` uses published split ``i`` of 20; ``--dataset_name=yacht_2`` uses the
original code's protocol (a random 90/10 split drawn with seed 2). Inputs and targets of
regression data are standardised with training statistics; metrics are reported back in
original units through ``y_scale``.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ppl_bnn.data.dataset import DATASETS, Dataset, check_dataset, register_dataset

__all__ = ["load_digits", "load_synthetic_regression", "load_dataset", "load_uci", "uci_data_dir"]

UCI_ALIASES = {
    "boston": "boston-housing",
    "power": "power-plant",
    "wine": "wine-quality-red",
    "concrete": "concrete",
    "naval": "naval-propulsion-plant",
}


def _standardise(
    train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (test - mean) / std, mean, std


def _regression(name, x_tr, y_tr, x_te, y_te) -> Dataset:
    x_tr, x_te, _, _ = _standardise(x_tr, x_te)
    y_tr, y_te, y_mean, y_std = _standardise(y_tr, y_te)
    f = lambda a: np.asarray(a, np.float32)
    return Dataset(
        name,
        f(x_tr),
        f(y_tr),
        f(x_te),
        f(y_te),
        "regression",
        y_scale=float(y_std),
        y_mean=float(y_mean),
    )


def load_digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images): 1437 train / 360 test, a fixed split.

    Pixels are scaled to [0, 1] and normalised with the training mean and std, as the
    original normalised MNIST. Images keep their shape ``(8, 8, 1)``.
    """
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(len(x))
    x, y = x[perm], y[perm]
    n_train = 1437
    mean, std = x[:n_train].mean(), x[:n_train].std()
    x = (x - mean) / std
    return Dataset(
        "digits",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        "classification",
        num_classes=10,
    )


def load_synthetic_regression(seed: int = 0) -> Dataset:
    """The original's synthetic 1-D regression toy, generated procedurally.

    120 training inputs in three clusters, features ``(x, x^2)``, targets from a random
    ReLU MLP with hidden widths (100, 100, 100) and weights ``N(0, 0.1^2)``, plus noise of
    std 0.02. The test inputs are a grid over ``[-2, 2]`` that covers the gaps between
    clusters (where a good posterior is uncertain).
    """
    rng = np.random.default_rng(seed)
    centres = np.array([-1.0, 0.0, 1.3])
    x = np.concatenate([c + 0.2 * rng.uniform(-1, 1, 40) for c in centres])
    x_test = np.linspace(-2.0, 2.0, 200)
    feats = lambda v: np.stack([v, v**2], axis=1)
    widths = [2, 100, 100, 100, 1]
    shapes = zip(widths[:-1], widths[1:], strict=True)
    weights = [(rng.normal(0, 0.1, (a, b)), rng.normal(0, 0.1, b)) for a, b in shapes]

    def f(v):
        h = feats(v)
        for i, (w, b) in enumerate(weights):
            h = h @ w + b
            if i < len(weights) - 1:
                h = np.maximum(h, 0)
        return h[:, 0] * 10.0

    y = f(x) + 0.02 * rng.normal(size=x.shape)
    y_test = f(x_test) + 0.02 * rng.normal(size=x_test.shape)
    return _regression("synthetic_regression", feats(x), y, feats(x_test), y_test)


def uci_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The UCI folder: ``data_dir``, else ``$PPL_BNN_UCI_DIR``, else ``$PPL_BNN_DATA/uci``,
    else ``~/.ppl_bnn/uci`` (where ``ppl-bnn download uci`` puts the datasets)."""
    root = Path(os.environ.get("PPL_BNN_DATA") or Path.home() / ".ppl_bnn")
    return Path(data_dir or os.environ.get("PPL_BNN_UCI_DIR") or root / "uci")


def load_uci(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    split: int | None = None,
    seed: int | None = None,
) -> Dataset:
    """A UCI regression benchmark from a folder in the standard layout.

    Exactly one of ``split`` (published split 0..19, ``index_train_{split}.txt``) or
    ``seed`` (the original code's random 90/10 split) must be given.
    """
    folder = uci_data_dir(data_dir) / UCI_ALIASES.get(name, name)
    data_file = folder / "data.txt"
    if not data_file.is_file():
        raise FileNotFoundError(
            f"UCI dataset {name!r} not found: no {data_file} (run `ppl-bnn download uci "
            f"{UCI_ALIASES.get(name, name)}`, or pass --data_dir=FOLDER holding "
            f"<name>/data.txt and index_*.txt)"
        )
    data = np.loadtxt(data_file)
    features = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int))
    x, y = data[:, features], data[:, target]
    if (split is None) == (seed is None):
        raise ValueError("load_uci needs exactly one of split= (published) or seed= (random)")
    if split is not None:
        train_file = folder / f"index_train_{split}.txt"
        if not train_file.is_file():
            raise FileNotFoundError(f"UCI dataset {name!r} has no split {split}: no {train_file}")
        train = np.loadtxt(train_file, dtype=int, ndmin=1)
        test = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int, ndmin=1)
        label = f"{name}@split{split}"
    else:
        perm = np.random.default_rng(seed).permutation(len(x))
        n_train = int(0.9 * len(x))
        train, test = perm[:n_train], perm[n_train:]
        label = f"{name}_{seed}"
    return _regression(label, x[train], y[train], x[test], y[test])


register_dataset("digits", lambda **kw: load_digits())
register_dataset("synthetic_regression", lambda **kw: load_synthetic_regression())


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    uci_split: int | None = None,
    subset_train_to: int | None = None,
) -> Dataset:
    """Load a dataset by name (the CLI's ``--dataset_name``).

    Registered names (``digits``, ``synthetic_regression``, and what later modules add),
    an ``.npz`` file with ``x_train, y_train, x_test, y_test`` (integer ``y``:
    classification, float ``y``: regression), a UCI
    folder name (with ``uci_split``) or ``<uci name>_<seed>``.
    """
    source = None
    uci_name = re.fullmatch(r"(.+)_(\d+)", name)
    if uci_split is not None and (name in DATASETS or name.endswith(".npz") or uci_name):
        raise ValueError(
            f"--uci_split={uci_split} applies to plain UCI dataset names, not {name!r}"
        )
    if name in DATASETS:
        ds = DATASETS[name](data_dir=data_dir, uci_split=uci_split)
    elif name.endswith(".npz"):
        ds, source = _load_npz(name), f"dataset file {name}"
    elif uci_name:
        ds = load_uci(uci_name.group(1), data_dir, seed=int(uci_name.group(2)))
    elif uci_data_dir(data_dir).joinpath(UCI_ALIASES.get(name, name)).is_dir():
        ds = load_uci(name, data_dir, split=0 if uci_split is None else uci_split)
    else:
        known = ", ".join(sorted(DATASETS))
        raise ValueError(
            f"unknown dataset {name!r}: not one of {known}, an .npz file, or a UCI folder "
            f"under {uci_data_dir(data_dir)} (set --data_dir)"
        )
    check_dataset(ds, source)  # before the subset: a bad row anywhere is refused
    return ds.subset_train(subset_train_to)


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


MAX_NUM_CLASSES = 100_000  # a larger num_classes in a file is a mistake, not a model


def _load_npz(path: str) -> Dataset:
    """A dataset from an ``.npz`` with :data:`NPZ_KEYS` (and optionally ``num_classes``).

    The task follows the targets' dtype: integer ``y_train`` and ``y_test`` are class
    labels (classification; ``num_classes`` default: the largest training label + 1),
    floating ones regression targets in the units given (not standardised). Read without
    pickle; a missing key, complex or 1-D inputs, a bad ``num_classes``, or a test label
    that no training label has (with no ``num_classes`` in the file) is a one-line
    ``ValueError``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    where = f"dataset file {path}"
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise ValueError(
                    f"{where} has no {missing[0]!r} array (it needs {', '.join(NPZ_KEYS)})"
                )
            arrays = {k: f[k] for k in NPZ_KEYS}
            stored_classes = f["num_classes"] if "num_classes" in f.files else None
    except ValueError as e:
        if str(e).startswith(where):
            raise
        if "pickle" in str(e):  # numpy's message suggests allow_pickle=True: never
            raise ValueError(
                f"{where} is not a readable .npz of arrays: it holds Python objects or is "
                "no .npz, and pickles are never loaded (they can run code)"
            ) from None
        raise ValueError(f"{where} is not a readable .npz of arrays: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where} is not a readable .npz: {e}") from None
    for name in NPZ_KEYS:
        a = arrays[name]
        if np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(
                f"{where}: {name} holds complex numbers ({a.dtype}): they are not cast to "
                "real ones; store the part you mean"
            )
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{where}: {name} has dtype {a.dtype}, not numbers")
        if name.startswith("x") and a.ndim < 2:
            raise ValueError(
                f"{where}: {name} has shape {a.shape}: inputs are (rows, features, ...); "
                f"store one feature per row as {name}[:, None]"
            )
    y_train, y_test = arrays["y_train"], arrays["y_test"]
    integer = [np.issubdtype(y.dtype, np.integer) for y in (y_train, y_test)]
    if integer[0] != integer[1] and len(y_test):
        raise ValueError(
            f"{where}: y_train has dtype {y_train.dtype} and y_test {y_test.dtype}: integer "
            "class labels in both (classification) or float targets in both (regression)"
        )
    if not integer[0]:
        if stored_classes is not None:
            raise ValueError(
                f"{where}: num_classes is given but y_train has dtype {y_train.dtype}: class "
                "labels must be integers (float labels are not truncated; store them with "
                "y.astype(int) if whole), float targets make a regression without num_classes"
            )
        return Dataset(
            Path(path).stem,
            arrays["x_train"].astype(np.float32),
            y_train.astype(np.float32),
            arrays["x_test"].astype(np.float32),
            y_test.astype(np.float32),
            "regression",
        )
    num_classes = None if stored_classes is None else _num_classes(stored_classes, where)
    if num_classes is None and len(y_train):
        num_classes = int(y_train.max()) + 1
        if len(y_test) and y_test.max() >= num_classes:
            raise ValueError(
                f"{where}: y_test holds label {int(y_test.max())}, which no training label "
                f"has (training labels 0..{num_classes - 1}); store num_classes in the file "
                "if the model has more classes"
            )
        if num_classes > MAX_NUM_CLASSES:
            raise ValueError(
                f"{where}: y_train holds label {num_classes - 1}: at most "
                f"{MAX_NUM_CLASSES} classes (labels are 0, 1, ...; float targets make a "
                "regression)"
            )
    for name, y in (("y_train", y_train), ("y_test", y_test)):  # before int32 can wrap them
        if len(y) and num_classes and (y.min() < 0 or y.max() >= num_classes):
            bad = int(y[(y < 0) | (y >= num_classes)][0])
            raise ValueError(
                f"{where}: {name} holds label {bad}, outside 0..{num_classes - 1} "
                f"(num_classes={num_classes})"
            )
    return Dataset(
        Path(path).stem,
        arrays["x_train"].astype(np.float32),
        y_train.astype(np.int32),
        arrays["x_test"].astype(np.float32),
        y_test.astype(np.int32),
        "classification",
        num_classes=num_classes,
    )


def _num_classes(value: np.ndarray, where: str) -> int:
    """The file's ``num_classes``: one whole number in ``2..MAX_NUM_CLASSES``."""
    if value.ndim != 0 or not np.issubdtype(value.dtype, np.integer):
        shown = value.tolist() if value.size <= 4 else f"an array of shape {value.shape}"
        raise ValueError(f"{where}: num_classes must be one integer, got {shown!r} ({value.dtype})")
    k = int(value)
    if not 2 <= k <= MAX_NUM_CLASSES:
        raise ValueError(f"{where}: num_classes={k} must lie in 2..{MAX_NUM_CLASSES}")
    return k
