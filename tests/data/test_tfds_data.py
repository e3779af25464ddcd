"""TFDS datasets, offline: ``tfds.testing.mock_data`` and tiny datasets written in TFDS's own
array_record layout (read back through ``tfds.data_source``, without TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ppl_bnn.data import DATASETS, load_dataset
from ppl_bnn.data import tfds as tfds_data
from ppl_bnn.data.tfds import (
    CIFAR10_CORRUPTIONS,
    DatasetNotPrepared,
    imdb_vocabulary,
    load_cifar10_corrupted,
    pad_sequences,
    write_prepared,
)

CIFAR_MEAN, CIFAR_STD = np.array([0.49, 0.48, 0.44]), np.array([0.2, 0.2, 0.2])


def test_import_does_not_load_tfds():
    code = (
        "import sys, ppl_bnn.data, ppl_bnn.data.tfds; "
        "assert 'tensorflow_datasets' not in sys.modules; "
        "assert 'cifar10' in ppl_bnn.data.DATASETS"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_names():
    for name in ("cifar10", "cifar100", "mnist", "imdb"):
        assert name in DATASETS
    assert len(CIFAR10_CORRUPTIONS) == 19
    corrupted = [n for n in DATASETS if n.startswith("cifar10_corrupted/")]
    assert len(corrupted) == 19 * 5 and "cifar10_corrupted/frosted_glass_blur_5" in corrupted


def test_corruption_list_matches_tfds_builder():
    configs = {c.name for c in tfds.builder_cls("cifar10_corrupted").BUILDER_CONFIGS}
    assert configs == {f"{c}_{s}" for c in CIFAR10_CORRUPTIONS for s in range(1, 6)}


@pytest.mark.parametrize(
    "name, shape, classes",
    [
        ("cifar10", (32, 32, 3), 10),
        ("cifar100", (32, 32, 3), 100),
        ("mnist", (28, 28, 1), 10),
        ("cifar10_corrupted/fog_3", (32, 32, 3), 10),
    ],
)
def test_mock_images_normalised_like_the_original(name, shape, classes):
    with tfds.testing.mock_data(num_examples=6):
        ds = load_dataset(name)
        raw = tfds.data_source(tfds_data.tfds_names(name)[0], split="test")
        raw_x = np.stack([raw[i]["image"] for i in range(6)])
    assert ds.x_train.shape == (6, *shape) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (6, *shape) and ds.y_train.dtype == np.int32
    assert ds.num_classes == classes and ds.task == "classification"
    mean, std = (CIFAR_MEAN, CIFAR_STD) if shape[-1] == 3 else (0.1307, 0.3081)
    np.testing.assert_allclose(ds.x_test, (raw_x / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)


def test_mock_imdb_and_subset():
    with tfds.testing.mock_data(num_examples=12):
        ds = load_dataset("imdb", subset_train_to=5)
    assert ds.x_train.shape == (5, 100) and ds.x_train.dtype == np.int32
    assert ds.x_test.shape == (12, 100) and ds.num_classes == 2
    assert ((ds.x_train >= 0) & (ds.x_train < 20000)).all()
    # every review starts with the start token 1 after the zero padding
    for row in ds.x_test:
        assert row[np.argmax(row != 0)] == 1


def test_imdb_vocabulary_and_encoding_by_hand():
    texts = ["The cat, the DOG!", "a cat<br />dog dog"]
    # words: [the, cat, the, dog], [a, cat, br, dog, dog]; counts dog 3, the 2, cat 2, a 1,
    # br 1; ties keep first occurrence (the before cat, a before br); index = rank + 3
    assert imdb_vocabulary(texts, num_words=100) == {"dog": 4, "the": 5, "cat": 6, "a": 7, "br": 8}
    vocab = imdb_vocabulary(texts, num_words=7)  # only indices < 7: dog, the, cat
    assert vocab == {"dog": 4, "the": 5, "cat": 6}
    encoded = [tfds_data._encode(t, vocab) for t in texts]
    assert encoded == [[1, 5, 6, 5, 4], [1, 2, 6, 2, 4, 4]]  # 1 = start, 2 = rare word
    # Keras defaults: keep the last tokens, pad at the front
    np.testing.assert_array_equal(
        pad_sequences([*encoded, [1, 4], []], maxlen=4),
        [[5, 6, 5, 4], [6, 2, 4, 4], [0, 0, 1, 4], [0, 0, 0, 0]],
    )


def test_bytes_text_and_keras_splitting():
    assert tfds_data._keras_words(b"Hello,\tworld\xc2\xa0x") == ["hello", "world\xa0x"]


def _png_roundtrip_examples(rng, n, shape, classes, with_id=False, coarse=False):
    out = []
    for i in range(n):
        ex = {"image": rng.integers(0, 256, shape, dtype=np.uint8), "label": int(i % classes)}
        if with_id:
            ex["id"] = f"x{i:05d}"
        if coarse:
            ex["coarse_label"] = int(i % 20)
        out.append(ex)
    return out


def test_prepared_array_record_images_read_without_tensorflow(tmp_path):
    rng = np.random.default_rng(0)
    train = _png_roundtrip_examples(rng, 5, (32, 32, 3), 10, with_id=True)
    test = _png_roundtrip_examples(rng, 3, (32, 32, 3), 10, with_id=True)
    write_prepared("cifar10", {"train": train, "test": test}, tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    expected = (np.stack([e["image"] for e in train]) / 255.0 - CIFAR_MEAN) / CIFAR_STD
    np.testing.assert_allclose(ds.x_train, expected, rtol=1e-5, atol=1e-5)  # PNG is lossless
    np.testing.assert_array_equal(ds.y_train, [e["label"] for e in train])
    assert ds.x_test.shape == (3, 32, 32, 3) and ds.num_classes == 10

    mnist = _png_roundtrip_examples(rng, 4, (28, 28, 1), 10)
    write_prepared("mnist", {"train": mnist, "test": mnist[:2]}, tmp_path)
    ds = load_dataset("mnist", data_dir=tmp_path)
    expected = (np.stack([e["image"] for e in mnist]) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(ds.x_train, expected, rtol=1e-5, atol=1e-5)

    fog = _png_roundtrip_examples(rng, 4, (32, 32, 3), 10)
    write_prepared("cifar10_corrupted/fog_2", {"test": fog}, tmp_path)
    x, y = load_cifar10_corrupted("fog", 2, data_dir=tmp_path)
    expected = (np.stack([e["image"] for e in fog]) / 255.0 - CIFAR_MEAN) / CIFAR_STD
    np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, [e["label"] for e in fog])
    shifted = load_dataset("cifar10_corrupted/fog_2", data_dir=tmp_path)
    assert shifted.x_train.shape == (5, 32, 32, 3)  # CIFAR-10's training set
    np.testing.assert_allclose(shifted.x_test, expected, rtol=1e-5, atol=1e-5)


def test_prepared_imdb_text(tmp_path):
    train = [
        {"text": t, "label": i % 2}
        for i, t in enumerate(["good good film", "bad film", "good plot<br />bad end"])
    ]
    test = [{"text": "unseen good words", "label": 1}]
    write_prepared("imdb_reviews/plain_text", {"train": train, "test": test}, tmp_path)
    ds = load_dataset("imdb", data_dir=tmp_path)
    # counts: good 3, film 2, bad 2, plot 1, br 1, end 1 (ties in order of first occurrence)
    # -> good 4, film 5, bad 6, plot 7, br 8, end 9
    assert ds.x_train.shape == (3, 100)
    np.testing.assert_array_equal(ds.x_train[0, -4:], [1, 4, 4, 5])
    np.testing.assert_array_equal(ds.x_train[1, -4:], [0, 1, 6, 5])
    np.testing.assert_array_equal(ds.x_train[2, -7:], [0, 1, 4, 7, 8, 6, 9])
    np.testing.assert_array_equal(ds.x_test[0, -4:], [1, 2, 4, 2])  # unseen -> 2
    np.testing.assert_array_equal(ds.y_train, [0, 1, 0])


def test_not_prepared_is_a_one_line_error_naming_the_command(tmp_path, cli):
    with pytest.raises(DatasetNotPrepared, match=f"ppl-bnn download mnist --data_dir={tmp_path}"):
        load_dataset("mnist", data_dir=tmp_path)
    rc, _, err = cli(
        "hmc",
        f"--dir={tmp_path / 'run'}",
        "--dataset_name=cifar10_corrupted/snow_4",
        f"--data_dir={tmp_path}",
    )
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "ppl-bnn download cifar10_corrupted/snow_4" in err


def test_corrupted_argument_checks():
    with pytest.raises(ValueError, match="unknown CIFAR-10 corruption"):
        load_cifar10_corrupted("glass_blur", 1)  # TFDS calls it frosted_glass_blur
    with pytest.raises(ValueError, match="severity"):
        load_cifar10_corrupted("fog", 6)


def test_download_command(monkeypatch, cli, tmp_path):
    calls = []

    class FakeBuilder:
        def __init__(self, name, data_dir, file_format):
            calls.append(("builder", name, str(data_dir), file_format))

        def download_and_prepare(self, file_format):
            calls.append(("prepare", file_format))

    monkeypatch.setattr(tfds_data, "_missing_prepare_dependencies", lambda: [])
    monkeypatch.setattr(tfds, "builder", FakeBuilder)
    rc, out, _ = cli("download", "imdb", "cifar10_corrupted", f"--data_dir={tmp_path}")
    assert rc == 0
    built = [c[1] for c in calls if c[0] == "builder"]
    assert built[0] == "imdb_reviews/plain_text" and len(built) == 1 + 95
    assert built[1:] == [
        f"cifar10_corrupted/{c}_{s}" for c in CIFAR10_CORRUPTIONS for s in range(1, 6)
    ]
    assert {c[-1] for c in calls} == {"array_record"}
    assert all(c[2] == str(tmp_path) for c in calls if c[0] == "builder")
    # a bad name is refused before anything is downloaded
    calls.clear()
    rc, _, err = cli("download", "mnist", "svhn")
    assert rc == 2 and "unknown TFDS dataset 'svhn'" in err and not calls


def test_download_without_tensorflow_says_so(monkeypatch, cli):
    monkeypatch.setattr(tfds_data, "_missing_prepare_dependencies", lambda: ["tensorflow"])
    rc, _, err = cli("download", "cifar10")
    assert rc == 2 and "needs tensorflow" in err and "reading the prepared data" in err
