"""The checkpoint and sample formats: exact round trips, no code execution, retention.

A checkpoint must restore the very pytree that was saved (containers, NamedTuple types,
dtypes, numpy scalars, JAX keys) and must never run code or import anything named in the
file; a sample file must be readable by plain numpy.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from blackjax.mcmc.hmc import HMCState

from ppl_bnn.evaluation.bma import EnsembleState
from ppl_bnn.inference.hmc import MassMatrixEstimate
from ppl_bnn.inference.sgmcmc import PreconditionedState, SGHMCState
from ppl_bnn.store import checkpoint as ckpt
from ppl_bnn.store.checkpoint import (
    CheckpointError,
    CheckpointStore,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from ppl_bnn.store.samples import SampleStore, write_arrays


class Evil:
    """Unpickling this creates ``marker``: proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def assert_same(a, b, path="tree"):
    """Same pytree: container types, NamedTuple types, dtypes, shapes, bits."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        assert jax.random.key_impl(a) == jax.random.key_impl(b), path
        np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), path
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, path


def every_saved_type():
    """A tree with every kind of value the runners save today."""
    pos = {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float32)}
    opt = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9))
    adam = optax.adam(1e-3)
    return {
        "step": 7,
        "key": np.asarray(jax.random.key_data(jax.random.key(3))),
        "typed_key": jax.random.split(jax.random.key(5), 2),
        "position": pos,
        "hmc": HMCState(pos, np.float32(-3.5), pos),
        "sgmcmc": SGHMCState(None, {"w": np.zeros((2, 3), np.float32)}),
        "prec": PreconditionedState(
            *[np.float32(i) for i in range(len(PreconditionedState._fields))]
        ),
        "step_size": np.array([1e-3, 2e-3]),  # float64
        "mass_matrix_estimate": tuple(
            np.asarray(a) for a in MassMatrixEstimate.zeros(2, 4, jnp.float32)
        ),
        "ensemble": EnsembleState(np.zeros((3, 2)), np.zeros(3), 6),
        "opt_state": jax.tree.map(np.asarray, opt.init(pos)),
        "adam": jax.tree.map(np.asarray, adam.init(pos)),
        "elapsed": 1.25,
        "inf": float("-inf"),
        "nan": float("nan"),
        "np_scalar": np.float64(0.1),
        "int_scalar": np.int32(-4),
        "flag": np.bool_(True),
        "bfloat16": np.asarray(jnp.arange(3, dtype=jnp.bfloat16)),
        "names": ["w[0,0]", "b[1]"],
        "nested": [(1, "a"), None, True],
        3: "an int key",
    }


def test_every_saved_type_round_trips_exactly(tmp_path):
    tree = every_saved_type()
    path = save_checkpoint(tmp_path / "c.npz", tree)
    assert_same(tree, load_checkpoint(path))
    # plain numpy reads the arrays (no pickle anywhere)
    with np.load(path, allow_pickle=False) as f:
        assert "__tree__" in f.files and json.loads(f["__tree__"].tobytes())["version"] == 2


def test_jax_arrays_come_back_as_numpy_with_the_same_bits(tmp_path):
    x = jax.random.normal(jax.random.key(0), (4,))
    back = load_checkpoint(save_checkpoint(tmp_path / "c.npz", {"x": x}))["x"]
    assert isinstance(back, np.ndarray) and back.dtype == x.dtype
    assert back.tobytes() == np.asarray(x).tobytes()


def test_unregistered_namedtuple_is_refused_before_writing(tmp_path):
    class Foreign(NamedTuple):
        a: int

    with pytest.raises(TypeError, match="not a checkpointable type"):
        save_checkpoint(tmp_path / "c.npz", {"x": Foreign(1)})
    with pytest.raises(TypeError, match="cannot checkpoint"):
        save_checkpoint(tmp_path / "c.npz", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def _rewrite(path, text: bytes, arrays):
    """A checkpoint whose structure was edited by hand, with a recomputed digest."""
    members = {str(i): a for i, a in enumerate(arrays)}
    members["__tree__"] = np.frombuffer(text, np.uint8)
    members["__sha256__"] = np.frombuffer(ckpt._digest(text, arrays), np.uint8)
    np.savez(path, **members)


def test_a_type_name_in_the_file_is_never_imported(tmp_path):
    text = json.dumps(
        {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "tree": {"namedtuple": "os.system", "fields": ["touch marker"]},
        }
    ).encode()
    _rewrite(tmp_path / "c.npz", text, [])
    with pytest.raises(CheckpointError, match="'os.system', not a type ppl_bnn restores"):
        load_checkpoint(tmp_path / "c.npz")


@pytest.mark.parametrize(
    "craft, message",
    [
        ("old_format", r"checkpoint_000001.npz is in the format of an unreleased .*restart"),
        ("raw_pickle", "pickle, which can run code"),
        ("object_array", "not a ppl_bnn checkpoint"),
        ("object_array_with_tree", "holds Python objects"),
    ],
)
def test_malicious_files_run_no_code(tmp_path, craft, message):
    marker = tmp_path / "marker"
    body = pickle.dumps({"step": 1, "x": Evil(marker)})
    path = tmp_path / "checkpoint_000001.npz"
    if craft == "old_format":
        path.write_bytes(ckpt._OLD_MAGIC + body + hashlib.sha256(body).digest())
    elif craft == "raw_pickle":
        path.write_bytes(body)
    else:
        members = {"0": np.array([Evil(marker)], dtype=object)}
        if craft == "object_array_with_tree":
            members["__tree__"] = np.frombuffer(b"{}", np.uint8)
            members["__sha256__"] = np.zeros(32, np.uint8)
        with open(path, "wb") as f:
            np.savez(f, **members)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert not marker.exists()


def test_foreign_truncated_and_altered_files(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, position=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a ppl_bnn checkpoint: no __tree__"):
        load_checkpoint(foreign)
    good = save_checkpoint(tmp_path / "good.npz", {"x": np.arange(100.0)})
    raw = bytearray(good.read_bytes())
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt checkpoint .*truncated or altered"):
        load_checkpoint(tmp_path / "cut.npz")
    # one flipped byte in the array data: the zip CRC or the SHA-256 catches it
    i = raw.index(np.arange(100.0).tobytes()) + 10
    raw[i] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt checkpoint .*(truncated or altered)"):
        load_checkpoint(tmp_path / "flip.npz")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.npz")


def test_extra_members_make_a_foreign_file(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", {"x": np.zeros(2)})
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("extra.npy", b"")
    with pytest.raises(CheckpointError, match="not a ppl_bnn checkpoint|corrupt"):
        load_checkpoint(path)


# ------------------------------------------------------------------ the store
def test_store_keeps_the_latest_two_and_names_exactly(tmp_path):
    folder = tmp_path / "checkpoints"
    store = CheckpointStore(folder)
    for step in range(1, 6):
        store.save(step, {"step": step})
    assert store.steps() == [4, 5]
    # files that are not named exactly like a checkpoint are neither read nor deleted
    for name in ("checkpoint_000009.npz.bak", "xcheckpoint_000009.npz", "checkpoint_9.npz"):
        (folder / name).write_bytes(b"x")
    assert latest_checkpoint(folder).name == "checkpoint_000005.npz"
    step, tree = store.restore()
    assert (step, tree) == (5, {"step": 5})
    store.save(6, {"step": 6})
    assert store.steps() == [5, 6] and (folder / "checkpoint_9.npz").exists()


def test_store_falls_back_to_the_previous_valid_checkpoint(tmp_path):
    warnings = []
    store = CheckpointStore(tmp_path, warn=warnings.append)
    store.save(1, {"step": 1})
    store.save(2, {"step": 2})
    raw = store.path(2).read_bytes()
    store.path(2).write_bytes(raw[:-20])
    assert store.restore() == (1, {"step": 1})
    assert len(warnings) == 1 and "checkpoint_000002.npz" in warnings[0]
    assert "resuming from the previous one, checkpoint_000001.npz" in warnings[0]
    # the resumed run writes step 2 again over the corrupt one
    store.save(2, {"step": 2})
    assert store.restore() == (2, {"step": 2}) and len(warnings) == 1
    # a save discards later (unrestorable) checkpoints
    store.save(3, {"step": 3})
    store.path(3).write_bytes(b"garbage")
    store.save(2, {"step": 2})
    assert store.steps() == [2]


def test_store_with_no_valid_checkpoint_is_an_error(tmp_path):
    store = CheckpointStore(tmp_path)
    assert store.restore() is None
    store.save(1, {"step": 1})
    store.path(1).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no earlier valid checkpoint"):
        store.restore()


def test_store_removes_orphaned_temporary_files_and_refuses_the_unreleased_format(tmp_path):
    (tmp_path / ".tmp-abc.npz").write_bytes(b"half a checkpoint")
    (tmp_path / "notes.txt").write_text("kept")
    CheckpointStore(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    CheckpointStore(tmp_path / "other", writer=False).save(1, {"step": 1})
    assert not (tmp_path / "other").exists()
    (tmp_path / "checkpoint_000003.pkl").write_bytes(ckpt._OLD_MAGIC)
    refused = r"checkpoint_000003.pkl is in the format of an unreleased .*restart the run"
    for read in (CheckpointStore(tmp_path).restore, lambda: latest_checkpoint(tmp_path)):
        with pytest.raises(CheckpointError, match=refused) as e:
            read()
        assert "\n" not in str(e.value)
    assert not hasattr(ckpt, "convert_pickle_checkpoint")  # no migration: the run restarts


# ---------------------------------------------------------------- samples
def test_sample_store_appends_thins_and_reads(tmp_path):
    store = SampleStore(tmp_path / "samples", thin=2)
    rng = np.random.default_rng(0)
    written = {}
    for step in range(3, 9):
        draw = {"w": rng.normal(size=(2, 3)).astype(np.float32), "file": rng.normal(size=(2,))}
        if store.append(step, draw) is not None:
            written[step] = draw
    assert sorted(written) == [4, 6, 8] == store.steps()
    steps, samples = store.read()
    assert steps.tolist() == [4, 6, 8]
    assert samples["w"].shape == (2, 3, 3) and samples["w"].dtype == np.float32
    np.testing.assert_array_equal(samples["w"][:, 1], written[6]["w"])
    np.testing.assert_array_equal(samples["file"][:, 2], written[8]["file"])
    with np.load(store.path(4), allow_pickle=False) as f:  # plain numpy
        assert sorted(f.files) == ["file", "w"]
    store.truncate(5)
    assert store.steps() == [4]
    assert SampleStore(tmp_path / "none", thin=0).append(2, {"w": np.zeros(1)}) is None


def test_sample_files_refuse_objects_and_report_corruption(tmp_path):
    with pytest.raises(TypeError, match="object arrays"):
        write_arrays(tmp_path / "x.npz", {"w": np.array([object()])})
    store = SampleStore(tmp_path / "s")
    store.append(1, {"w": np.zeros((1, 2))})
    store.append(2, {"w": np.zeros((1, 3))})
    with pytest.raises(CheckpointError, match="other sites or shapes"):
        store.read()
    store.path(2).write_bytes(store.path(2).read_bytes()[:30])
    with pytest.raises(CheckpointError, match="corrupt sample file .*sample_000002.npz"):
        store.read()


class _PositiveScale:
    """A stand-in LogDensity: site ``w`` (2,) unconstrained, ``s`` () positive (log)."""

    latent_sites = ["w", "s"]
    shapes = {"w": (2,), "s": ()}

    def unconstrain(self, values):
        return {"w": values["w"], "s": jnp.log(values["s"])}


def test_read_positions_from_a_sample_file_or_a_checkpoint(tmp_path):
    """Sample files hold constrained values (and maybe deterministic sites): they come
    back unconstrained; checkpoints hold unconstrained positions, single or stacked."""
    from ppl_bnn.store.samples import read_positions

    ld = _PositiveScale()
    w = np.array([[1.0, -2.0], [0.5, 0.25]], np.float32)
    s = np.array([2.0, 0.5], np.float32)
    sample = SampleStore(tmp_path / "samples").append(7, {"w": w, "s": s, "mean": w.sum(1)})
    got = read_positions(sample, ld)
    np.testing.assert_array_equal(got["w"], w)
    np.testing.assert_allclose(got["s"], np.log(s), rtol=1e-6)
    assert set(got) == {"w", "s"}
    single = save_checkpoint(tmp_path / "c.npz", {"position": {"w": w[0], "s": np.log(s[0])}})
    got = read_positions(single, ld)
    assert got["w"].shape == (1, 2) and got["s"].shape == (1,)
    bad = save_checkpoint(tmp_path / "bad.npz", {"position": {"w": np.zeros(3), "s": 0.0}})
    with pytest.raises(ValueError, match=r"w has shape \(3,\), expected \(chains, \*\(2,\)\)"):
        read_positions(bad, ld)
    with pytest.raises(ValueError, match="lacks parameters"):
        read_positions(save_checkpoint(tmp_path / "x.npz", {"position": {"w": w}}), ld)
