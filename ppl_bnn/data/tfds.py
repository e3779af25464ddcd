"""CIFAR-10, CIFAR-100, MNIST, IMDB and CIFAR-10-C through TensorFlow Datasets, without TensorFlow.

Datasets are read with ``tfds.data_source`` from TFDS's ``array_record`` files, which needs
neither TensorFlow nor a network connection. Preparing those files once
(``ppl-bnn download NAME``, i.e. the TFDS builder's ``download_and_prepare`` with
``file_format="array_record"``) does need TensorFlow: TFDS's builders read the raw archives
with ``tf.io.gfile`` and encode images with ``tf.image``. Install it for that step only
(``pip install tensorflow``); it can be removed afterwards.

Preprocessing follows the original code (``bnn_hmc/utils/data_utils.py``):

* images are scaled to ``[0, 1]`` and normalised per channel: CIFAR-10 and CIFAR-100 with
  mean ``(0.49, 0.48, 0.44)`` and std ``(0.2, 0.2, 0.2)``, MNIST with ``0.1307 / 0.3081``;
  no augmentation (see :mod:`ppl_bnn.data.augment` for the opt-in kind);
* ``imdb`` re-creates ``keras.datasets.imdb.load_data(num_words=20000)`` followed by
  ``pad_sequences(maxlen=100)`` from TFDS's plain-text reviews (:func:`load_imdb` lists
  where it cannot be exact); the first 20,000 of the 25,000 training reviews are the
  training set, all 25,000 test reviews the test set.

Registered names (``--dataset_name``): ``cifar10``, ``cifar100``, ``mnist``, ``imdb`` and
``cifar10_corrupted/<corruption>_<severity>`` (CIFAR-10 training set, corrupted test set).
TFDS itself is imported only when one of them is loaded.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from ppl_bnn.data.dataset import Dataset, register_dataset

__all__ = [
    "CIFAR10_BENCHMARK_CORRUPTIONS",
    "CIFAR10_CORRUPTIONS",
    "CIFAR10_SEVERITIES",
    "DatasetNotPrepared",
    "IMDB_MAXLEN",
    "IMDB_NUM_TRAIN",
    "IMDB_NUM_WORDS",
    "TFDS_DATASETS",
    "imdb_vocabulary",
    "load_cifar10",
    "load_cifar10_corrupted",
    "load_cifar100",
    "load_imdb",
    "load_mnist",
    "pad_sequences",
    "prepare",
    "tfds_names",
    "write_prepared",
]

CIFAR_MEAN = np.array([0.49, 0.48, 0.44], np.float32)
CIFAR_STD = np.array([0.2, 0.2, 0.2], np.float32)
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

IMDB_NUM_WORDS = 20000  # vocabulary size, reserved indices included (Keras num_words)
IMDB_MAXLEN = 100
IMDB_NUM_TRAIN = 20000
# Keras' imdb.load_data layout: 0 pads, 1 starts a review, 2 replaces rare words, and the
# word of frequency rank r (1-based) gets index r + 3.
IMDB_PAD, IMDB_START, IMDB_OOV, IMDB_INDEX_FROM = 0, 1, 2, 3
_KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'

# TFDS's cifar10_corrupted configurations (Hendrycks & Dietterich 2019): the 15 benchmark
# corruptions, then the 4 extra ones, each at severities 1..5 (10,000 test images each).
CIFAR10_BENCHMARK_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "frosted_glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic",
    "pixelate",
    "jpeg_compression",
)
CIFAR10_CORRUPTIONS = CIFAR10_BENCHMARK_CORRUPTIONS + (
    "gaussian_blur",
    "saturate",
    "spatter",
    "speckle_noise",
)
CIFAR10_SEVERITIES = (1, 2, 3, 4, 5)

# ppl_bnn name -> TFDS name
TFDS_DATASETS = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "mnist": "mnist",
    "imdb": "imdb_reviews/plain_text",
}


class DatasetNotPrepared(FileNotFoundError):
    """A TFDS dataset has no ``array_record`` files in the data folder."""


# ------------------------------------------------------------------------------ names
def _corrupted_config(corruption: str, severity: int) -> str:
    if corruption not in CIFAR10_CORRUPTIONS:
        raise ValueError(
            f"unknown CIFAR-10 corruption {corruption!r}; choose one of "
            f"{', '.join(CIFAR10_CORRUPTIONS)}"
        )
    if severity not in CIFAR10_SEVERITIES:
        raise ValueError(f"CIFAR-10-C severity must be 1..5, got {severity}")
    return f"{corruption}_{severity}"


def tfds_names(name: str) -> list[str]:
    """The TFDS dataset names behind a ppl_bnn dataset name (what ``prepare`` builds).

    ``cifar10_corrupted`` alone stands for all 95 configurations.
    """
    if name in TFDS_DATASETS:
        return [TFDS_DATASETS[name]]
    if name == "cifar10_corrupted":
        return [
            f"cifar10_corrupted/{c}_{s}" for c in CIFAR10_CORRUPTIONS for s in CIFAR10_SEVERITIES
        ]
    if m := re.fullmatch(r"cifar10_corrupted/(\w+)_(\d)", name):
        return [f"cifar10_corrupted/{_corrupted_config(m.group(1), int(m.group(2)))}"]
    known = ", ".join(
        [*TFDS_DATASETS, "cifar10_corrupted", "cifar10_corrupted/<corruption>_<1..5>"]
    )
    raise ValueError(f"unknown TFDS dataset {name!r}; choose one of {known}")


def _download_command(name: str, data_dir) -> str:
    return f"ppl-bnn download {name}" + (f" --data_dir={data_dir}" if data_dir else "")


def _default_data_dir(data_dir) -> str:
    return str(data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


# ---------------------------------------------------------------------------- reading
def _data_source(name: str, tfds_name: str, split: str, data_dir):
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except (NotImplementedError, FileNotFoundError, KeyError) as e:
        # TFDS reports a missing dataset as "random access ... not supported for TFRECORD",
        # and a half-prepared one (a folder without dataset_info.json) as a KeyError
        raise DatasetNotPrepared(
            f"TFDS dataset {tfds_name} is not prepared as array_record in "
            f"{_default_data_dir(data_dir)}: run `{_download_command(name, data_dir)}` once "
            f"(needs TensorFlow and a network connection)"
        ) from e


def _read_all(source, fields: Sequence[str], chunk: int = 4096) -> dict[str, list]:
    """Every record of a data source, as lists per field, read in chunks."""
    out: dict[str, list] = {f: [] for f in fields}
    n = len(source)
    for start in range(0, n, chunk):
        keys = list(range(start, min(n, start + chunk)))
        try:
            records = source.__getitems__(keys)
        except TypeError:
            # tfds.testing.mock_data's sources break __getitems__ (it loses `self`);
            # indexing one record at a time works there
            records = [source[k] for k in keys]
        for f in fields:
            out[f].extend(r[f] for r in records)
    return out


def _num_classes(source) -> int:
    return int(source.dataset_info.features["label"].num_classes)


def _images(source, mean, std) -> tuple[np.ndarray, np.ndarray]:
    rec = _read_all(source, ("image", "label"))
    x = np.stack(rec["image"]).astype(np.float32)
    x /= 255.0  # in place: the CIFAR training set is 600 MB as float32
    x -= mean
    x /= std
    return x, np.asarray(rec["label"], np.int32)


def _image_dataset(name: str, mean, std, data_dir, test=None) -> Dataset:
    train = _data_source(name, TFDS_DATASETS[name], "train", data_dir)
    x_tr, y_tr = _images(train, mean, std)
    x_te, y_te = (
        test
        if test is not None
        else _images(_data_source(name, TFDS_DATASETS[name], "test", data_dir), mean, std)
    )
    return Dataset(name, x_tr, y_tr, x_te, y_te, "classification", num_classes=_num_classes(train))


def load_cifar10(data_dir: str | os.PathLike | None = None, **_) -> Dataset:
    """CIFAR-10: 50,000 train / 10,000 test images ``(32, 32, 3)``, normalised as the original."""
    return _image_dataset("cifar10", CIFAR_MEAN, CIFAR_STD, data_dir)


def load_cifar100(data_dir: str | os.PathLike | None = None, **_) -> Dataset:
    """CIFAR-100 (fine labels): 50,000 train / 10,000 test, CIFAR-10's normalisation."""
    return _image_dataset("cifar100", CIFAR_MEAN, CIFAR_STD, data_dir)


def load_mnist(data_dir: str | os.PathLike | None = None, **_) -> Dataset:
    """MNIST: 60,000 train / 10,000 test images ``(28, 28, 1)``, normalised by 0.1307 / 0.3081."""
    return _image_dataset("mnist", MNIST_MEAN, MNIST_STD, data_dir)


def load_cifar10_corrupted(
    corruption: str, severity: int, data_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 CIFAR-10 test images under one corruption at one severity (CIFAR-10-C).

    Returns ``(x, y)`` with ``x`` float32 ``(n, 32, 32, 3)`` normalised exactly like
    :func:`load_cifar10` and ``y`` int32 labels. ``corruption`` is one of
    ``CIFAR10_CORRUPTIONS``, ``severity`` one of 1..5.
    """
    config = _corrupted_config(corruption, int(severity))
    source = _data_source(
        f"cifar10_corrupted/{config}", f"cifar10_corrupted/{config}", "test", data_dir
    )
    return _images(source, CIFAR_MEAN, CIFAR_STD)


def _load_cifar10_shifted(corruption: str, severity: int, data_dir=None, **_) -> Dataset:
    """CIFAR-10's training set with a CIFAR-10-C test set (``cifar10_corrupted/<c>_<s>``)."""
    test = load_cifar10_corrupted(corruption, severity, data_dir)
    ds = _image_dataset("cifar10", CIFAR_MEAN, CIFAR_STD, data_dir, test=test)
    return Dataset(
        f"cifar10_corrupted/{corruption}_{severity}",
        ds.x_train,
        ds.y_train,
        ds.x_test,
        ds.y_test,
        ds.task,
        num_classes=ds.num_classes,
    )


# ------------------------------------------------------------------------------- IMDB
_KERAS_TABLE = str.maketrans({c: " " for c in _KERAS_FILTERS})


def _keras_words(text: str | bytes) -> list[str]:
    """Keras ``text_to_word_sequence``: lower case, punctuation to spaces, split on spaces."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return [w for w in text.lower().translate(_KERAS_TABLE).split(" ") if w]


def imdb_vocabulary(
    texts: Iterable[str | bytes], num_words: int = IMDB_NUM_WORDS
) -> dict[str, int]:
    """Word -> index in Keras' IMDB layout, from word counts over ``texts``.

    Words are ranked by count (ties: first occurrence first, as Keras' ``Tokenizer``); the
    word of rank ``r`` (1-based) gets index ``r + 3`` and only indices below ``num_words``
    are kept (``num_words - 4`` words), as ``imdb.load_data(num_words=...)`` does.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(_keras_words(text))
    ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)  # stable
    limit = max(0, num_words - IMDB_INDEX_FROM - 1)
    return {w: r + 1 + IMDB_INDEX_FROM for r, (w, _) in enumerate(ranked[:limit])}


def _encode(text, vocab: Mapping[str, int]) -> list[int]:
    return [IMDB_START] + [vocab.get(w, IMDB_OOV) for w in _keras_words(text)]


def pad_sequences(sequences: Sequence[Sequence[int]], maxlen: int) -> np.ndarray:
    """Keras ``pad_sequences`` with its defaults: keep the *last* ``maxlen`` tokens of longer
    sequences and pad shorter ones with zeros at the *front*."""
    out = np.zeros((len(sequences), maxlen), np.int32)
    for i, seq in enumerate(sequences):
        tail = list(seq)[-maxlen:] if maxlen else []
        if tail:
            out[i, maxlen - len(tail) :] = tail
    return out


def load_imdb(data_dir: str | os.PathLike | None = None, **_) -> Dataset:
    """IMDB sentiment (binary) as the original's ``cnn_lstm`` input: ``(n, 100)`` int32 tokens.

    Re-creates ``keras.datasets.imdb.load_data(num_words=20000)`` + ``pad_sequences(
    maxlen=100)`` from TFDS's ``imdb_reviews/plain_text``: index layout 0 = padding,
    1 = start of review, 2 = out-of-vocabulary, word of rank r at r + 3, indices < 20,000;
    Keras' tokenisation (lower case, its punctuation filters, HTML ``<br />`` left in as the
    word ``br`` as in Keras' data); pre-padding and pre-truncation to 100 tokens. Train =
    the first 20,000 training reviews, test = all 25,000 test reviews.

    Deviations that cannot be avoided: Keras ships reviews already turned into indices, with
    ranks from its authors' own word counts, and shuffles them with seed 113; here the ranks
    come from word counts over the 25,000 TFDS training reviews (no test text is used), and
    the order, hence which 20,000 reviews form the training set, is TFDS's fixed order.
    """
    train = _data_source("imdb", TFDS_DATASETS["imdb"], "train", data_dir)
    test = _data_source("imdb", TFDS_DATASETS["imdb"], "test", data_dir)
    tr, te = _read_all(train, ("text", "label")), _read_all(test, ("text", "label"))
    vocab = imdb_vocabulary(tr["text"])
    encode = lambda texts: pad_sequences([_encode(t, vocab) for t in texts], IMDB_MAXLEN)
    x_tr, y_tr = encode(tr["text"]), np.asarray(tr["label"], np.int32)
    x_te, y_te = encode(te["text"]), np.asarray(te["label"], np.int32)
    return Dataset(
        "imdb",
        x_tr[:IMDB_NUM_TRAIN],
        y_tr[:IMDB_NUM_TRAIN],
        x_te,
        y_te,
        "classification",
        num_classes=_num_classes(train),
    )


# -------------------------------------------------------------------------- preparing
def prepare(name: str, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Download and prepare ``name`` once for :func:`tfds.data_source` (``array_record``).

    Runs each TFDS builder's ``download_and_prepare(file_format="array_record")``; TFDS
    caches the downloads under ``<data_dir>/downloads`` (all 95 CIFAR-10-C configurations
    share one archive). Needs TensorFlow and a network connection; returns the TFDS
    names prepared.
    """
    names = tfds_names(name)
    missing = _missing_prepare_dependencies()
    if missing:
        raise ModuleNotFoundError(
            f"preparing {name} with TFDS needs {' and '.join(missing)} "
            f"(pip install {' '.join(missing)}); reading the prepared data afterwards does not"
        )
    import tensorflow_datasets as tfds

    for tfds_name in names:
        builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
        builder.download_and_prepare(file_format="array_record")
    return names


def _missing_prepare_dependencies() -> list[str]:
    # TFDS's builders read archives with tf.io.gfile and encode images with tf.image;
    # TFDS 4.9 also imports importlib_resources (not declared on Python >= 3.9) to find a
    # builder's checksums file
    return [m for m in ("tensorflow", "importlib_resources") if importlib.util.find_spec(m) is None]


def write_prepared(
    tfds_name: str,
    splits: Mapping[str, Sequence[Mapping]],
    data_dir: str | os.PathLike,
) -> Path:
    """Write examples in TFDS's own prepared layout (``array_record``), without TensorFlow.

    ``splits`` maps a split name to its examples, each a dict with the builder's features
    (images as ``uint8`` arrays are PNG-encoded with Pillow, as TFDS would). The result is
    read by ``tfds.data_source(tfds_name, data_dir=data_dir)`` exactly like a dataset that
    ``download_and_prepare`` wrote. Meant for tests and for data already at hand as arrays.
    """
    import tensorflow_datasets as tfds
    from array_record.python.array_record_module import ArrayRecordWriter
    from tensorflow_datasets.core import file_adapters
    from tensorflow_datasets.core import splits as splits_lib

    builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
    info = builder.info
    folder = Path(builder.data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    split_infos = []
    for split, examples in splits.items():
        path = folder / f"{builder.name}-{split}.array_record-00000-of-00001"
        writer = ArrayRecordWriter(str(path), "group_size:1")
        for example in examples:
            writer.write(info.features.serialize_example(_png_images(info.features, example)))
        writer.close()
        split_infos.append(
            splits_lib.SplitInfo(
                name=split,
                shard_lengths=[len(examples)],
                num_bytes=path.stat().st_size,
                filename_template=None,
            )
        )
    info.set_file_format(file_adapters.FileFormat.ARRAY_RECORD)
    info.set_splits(splits_lib.SplitDict(split_infos))
    info.write_to_directory(folder)
    return folder


def _png_images(features, example: Mapping) -> dict:
    import tensorflow_datasets as tfds
    from PIL import Image

    out = dict(example)
    for key, value in example.items():
        if isinstance(features[key], tfds.features.Image) and isinstance(value, np.ndarray):
            buf = io.BytesIO()
            Image.fromarray(value.squeeze(-1) if value.shape[-1] == 1 else value).save(buf, "png")
            out[key] = buf.getvalue()
    return out


# --------------------------------------------------------------------------- registry
LOADERS = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "mnist": load_mnist,
    "imdb": load_imdb,
}
for _name, _loader in LOADERS.items():
    register_dataset(_name, _loader)
for _c in CIFAR10_CORRUPTIONS:
    for _s in CIFAR10_SEVERITIES:
        register_dataset(f"cifar10_corrupted/{_c}_{_s}", partial(_load_cifar10_shifted, _c, _s))
