"""Datasets: embedded defaults, the UCI benchmarks and their splits, subsetting, errors."""

from __future__ import annotations

import numpy as np
import pytest

from ppl_bnn.data import Dataset, load_dataset, load_uci

pytestmark = pytest.mark.filterwarnings("error")  # a strict harness: warnings fail


# ----------------------------------------------------------------------- digits
@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits_shapes_and_labels(digits):
    assert digits.task == "classification" and digits.num_classes == 10
    assert digits.x_train.shape == (1437, 8, 8, 1) and digits.x_test.shape == (360, 8, 8, 1)
    assert digits.y_train.shape == (1437,) and digits.y_test.shape == (360,)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert set(np.unique(digits.y_train)) == set(range(10))
    assert digits.num_outputs == 10


def _pixel_grid(x_train: np.ndarray) -> tuple[float, float]:
    """(mean, std) of the affine map pixel/16 -> standardised value, from the train set.

    Raw pixels are k/16 for k = 0..16, so standardised values lie on a grid whose step is
    1/(16 std) and whose lowest point (k = 0) is -mean/std.
    """
    values = np.unique(x_train.astype(np.float64))
    step = np.min(np.diff(values))
    std = 1.0 / (16.0 * step)
    return -values[0] * std, std


def test_digits_standardised_with_training_statistics(digits):
    x = digits.x_train.astype(np.float64)
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1.0) < 1e-5
    mean, std = _pixel_grid(digits.x_train)
    for split in (digits.x_train, digits.x_test):
        k = (split.astype(np.float64) * std + mean) * 16
        np.testing.assert_allclose(k, np.round(k), atol=1e-3)  # on the training grid
        assert k.round().min() == 0 and k.round().max() == 16


def test_digits_split_is_fixed_and_a_partition_of_the_1797_images(digits):
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)
    from sklearn.datasets import load_digits

    sk = load_digits()
    mean, std = _pixel_grid(digits.x_train)
    ours = np.concatenate([digits.x_train, digits.x_test]).astype(np.float64) * std + mean
    ours = np.round(ours * 16).astype(int).reshape(1797, 64)
    labels = np.concatenate([digits.y_train, digits.y_test])
    key = lambda imgs, lab: sorted(map(tuple, np.column_stack([imgs, lab])))  # noqa: E731
    assert key(ours, labels) == key(sk.images.reshape(1797, 64).astype(int), sk.target)


# --------------------------------------------------------- synthetic regression
def test_synthetic_regression():
    ds = load_dataset("synthetic_regression")
    assert ds.task == "regression" and ds.num_classes is None and ds.num_outputs == 2
    assert ds.x_train.shape == (120, 2) and ds.y_train.shape == (120,)
    assert ds.x_test.shape == (200, 2) and ds.y_test.shape == (200,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.float32
    x, y = ds.x_train.astype(np.float64), ds.y_train.astype(np.float64)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(y.mean(), 0, atol=1e-6)
    # divided by (std + 1e-6): y has a small std (about 0.04), where the 1e-6 shows
    np.testing.assert_allclose(x.std(0), 1, atol=1e-5)
    assert y.std() == pytest.approx((ds.y_scale - 1e-6) / ds.y_scale, abs=1e-6)
    assert ds.y_scale > 0
    # test inputs are an even grid of x (feature 0 is affine in x)
    np.testing.assert_allclose(np.diff(ds.x_test[:, 0]), np.diff(ds.x_test[:, 0])[0], rtol=1e-4)
    # feature 1 is x^2 under the same standardisation: a quadratic in feature 0, exactly
    coef = np.polyfit(ds.x_train[:, 0], ds.x_train[:, 1], 2)
    np.testing.assert_allclose(np.polyval(coef, ds.x_test[:, 0]), ds.x_test[:, 1], atol=1e-4)
    again = load_dataset("synthetic_regression")
    np.testing.assert_array_equal(again.y_test, ds.y_test)


# ---------------------------------------------------------------------- UCI
def _raw(uci_dir, name="yacht"):
    folder = uci_dir / name
    data = np.loadtxt(folder / "data.txt")
    features = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int))
    return data[:, features], data[:, target]


def _check_standardised(ds: Dataset, x_tr, y_tr, x_te, y_te):
    """Inputs and targets standardised with the *training* mean and std (+1e-6)."""
    mx, sx = x_tr.mean(0), x_tr.std(0) + 1e-6
    my, sy = y_tr.mean(), y_tr.std() + 1e-6
    np.testing.assert_allclose(ds.x_train, (x_tr - mx) / sx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.x_test, (x_te - mx) / sx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.y_train, (y_tr - my) / sy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ds.y_test, (y_te - my) / sy, rtol=1e-5, atol=1e-5)
    assert ds.y_scale == pytest.approx(sy, rel=1e-12)
    assert ds.y_mean == pytest.approx(my, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "n_train", "n_test"),
    [("yacht", 277, 31), ("boston-housing", 455, 51), ("energy", 691, 77)],
)
def test_uci_published_split_0(uci_dir, name, n_train, n_test):
    ds = load_dataset(name, data_dir=uci_dir)
    assert ds.task == "regression" and ds.name == f"{name}@split0"
    assert ds.x_train.shape[0] == n_train and ds.x_test.shape[0] == n_test
    x, y = _raw(uci_dir, name)
    tr = np.loadtxt(uci_dir / name / "index_train_0.txt", dtype=int)
    te = np.loadtxt(uci_dir / name / "index_test_0.txt", dtype=int)
    _check_standardised(ds, x[tr], y[tr], x[te], y[te])


def test_uci_other_published_split_and_alias(uci_dir):
    ds = load_dataset("boston", data_dir=uci_dir, uci_split=7)
    x, y = _raw(uci_dir, "boston-housing")
    tr = np.loadtxt(uci_dir / "boston-housing" / "index_train_7.txt", dtype=int)
    te = np.loadtxt(uci_dir / "boston-housing" / "index_test_7.txt", dtype=int)
    _check_standardised(ds, x[tr], y[tr], x[te], y[te])
    with pytest.raises(FileNotFoundError, match="no split 20"):
        load_dataset("yacht", data_dir=uci_dir, uci_split=20)


def _recover_rows(ds: Dataset, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which raw rows ended up in train and test, without knowing how the split was drawn.

    Standardisation is one affine map per column, and train + test hold every row once, so
    the map follows from the means and stds of the union; each example is then matched to
    its nearest raw row.
    """
    raw = np.column_stack([x, y])
    std = np.column_stack(
        [np.concatenate([ds.x_train, ds.x_test]), np.concatenate([ds.y_train, ds.y_test])]
    ).astype(np.float64)
    scale = raw.std(0) / std.std(0)
    shift = raw.mean(0) - scale * std.mean(0)
    unstd = std * scale + shift
    dist = np.abs(unstd[:, None, :] - raw[None, :, :]).max(-1) / (np.abs(raw).max(0).max())
    rows = np.argmin(dist, 1)
    assert np.all(dist[np.arange(len(rows)), rows] < 1e-5)
    n = len(ds.x_train)
    return rows[:n], rows[n:]


def test_uci_random_split_protocol_of_the_original(uci_dir):
    """``yacht_2``: a random 90/10 split drawn with seed 2, covering every row once."""
    ds = load_dataset("yacht_2", data_dir=uci_dir)
    assert ds.name == "yacht_2"
    assert ds.x_train.shape == (277, 6) and ds.x_test.shape == (31, 6)  # int(0.9 * 308)
    x, y = _raw(uci_dir)
    tr, te = _recover_rows(ds, x, y)
    assert len(set(tr) | set(te)) == 308  # a partition: every row exactly once
    _check_standardised(ds, x[tr], y[tr], x[te], y[te])
    published = np.loadtxt(uci_dir / "yacht" / "index_train_0.txt", dtype=int)
    assert set(tr) != set(published)  # not a published split
    other = load_dataset("yacht_3", data_dir=uci_dir)
    assert set(_recover_rows(other, x, y)[0]) != set(tr)  # the seed matters
    same = load_dataset("yacht_2", data_dir=uci_dir)
    np.testing.assert_array_equal(same.x_train, ds.x_train)  # and fixes the split


def test_uci_env_var_and_load_uci_arguments(uci_dir, monkeypatch):
    monkeypatch.setenv("PPL_BNN_UCI_DIR", str(uci_dir))
    assert load_dataset("yacht").x_train.shape == (277, 6)
    with pytest.raises(ValueError, match="exactly one of"):
        load_uci("yacht", uci_dir)
    with pytest.raises(ValueError, match="exactly one of"):
        load_uci("yacht", uci_dir, split=0, seed=1)


# ------------------------------------------------------------- subset and errors
def test_subset_train_to_keeps_the_first_n(digits):
    sub = load_dataset("digits", subset_train_to=160)
    assert sub.x_train.shape[0] == 160
    np.testing.assert_array_equal(sub.x_train, digits.x_train[:160])
    np.testing.assert_array_equal(sub.y_train, digits.y_train[:160])
    np.testing.assert_array_equal(sub.x_test, digits.x_test)  # the test set is untouched
    for bad in (0, 1438):
        with pytest.raises(ValueError, match=f"--subset_train_to={bad}"):
            load_dataset("digits", subset_train_to=bad)


def test_unknown_dataset_names_it(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'"):
        load_dataset("cifar11", data_dir=tmp_path)


def test_missing_uci_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="UCI dataset 'yacht' not found"):
        load_dataset("yacht_2", data_dir=missing)
    # a plain UCI name whose folder is missing is an unknown dataset, naming the folder
    with pytest.raises(ValueError, match="unknown dataset 'yacht'.*nowhere"):
        load_dataset("yacht", data_dir=missing)


def test_npz_dataset(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "toy.npz"
    np.savez(
        path,
        x_train=rng.normal(size=(6, 2)),
        y_train=np.array([0, 1, 2, 0, 1, 2]),
        x_test=rng.normal(size=(3, 2)),
        y_test=np.array([2, 1, 0]),
    )
    ds = load_dataset(str(path))
    assert ds.task == "classification" and ds.num_classes == 3 and ds.name == "toy"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "absent.npz"))
