"""``fetch_uci`` / ``ppl-bnn download uci`` end to end over a local HTTP server serving
files the test writes: pinned hashes accepted, a wrong hash refused with nothing left
behind, unpinned files refused before any download; the registry's own pins against the
copies in ../shared/data/uci when that folder exists."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import UCI_DIR

from ppl_bnn.data import load_uci
from ppl_bnn.data.download import (
    UnpinnedFileError,
    fetch_hmc_reference,
    fetch_uci,
    read_sha256_file,
    read_sha256_lines,
    uci_files,
    uci_plan,
)
from ppl_bnn.data.registry import UCI_DATASETS, UCI_SHA256


@pytest.fixture
def server(tmp_path):
    """An HTTP server on localhost serving ``tmp_path / "srv"``; yields (folder, base URL)."""
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _write_yacht(srv: Path, rng, name: str = "yacht") -> dict[str, str]:
    """A small dataset in the layout, with the file list of ``name`` (20 splits); returns
    its pins."""
    n = 30
    folder = srv / name
    (folder / "mc_dropout_results").mkdir(parents=True)
    np.savetxt(folder / "data.txt", rng.normal(size=(n, 7)), fmt="%.4f")
    (folder / "index_features.txt").write_text("".join(f"{i}\n" for i in range(6)))
    (folder / "index_target.txt").write_text("6\n")
    (folder / "n_splits.txt").write_text("20\n")
    for i in range(20):
        perm = rng.permutation(n)
        (folder / f"index_train_{i}.txt").write_text("".join(f"{j}\n" for j in perm[:27]))
        (folder / f"index_test_{i}.txt").write_text("".join(f"{j}\n" for j in perm[27:]))
    for rel, _, _ in uci_files(name):
        p = srv / rel
        if not p.exists():
            p.write_text("1\n")
    return {
        str(p.relative_to(srv)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def _pin_file(path: Path, pins: dict[str, str]) -> Path:
    path.write_text("".join(f"{h}  {rel}\n" for rel, h in sorted(pins.items())))
    return path


def test_fetch_uci_over_http_installs_a_loadable_dataset(server, tmp_path):
    srv, url = server
    pins = _write_yacht(srv, np.random.default_rng(0))
    dest = tmp_path / "uci"
    out = fetch_uci(["yacht"], dest, progress=False, sha256=pins, url_base=url)
    assert len(out["installed"]["yacht"]) == len(uci_files("yacht")) == 56
    for rel, h in pins.items():
        assert hashlib.sha256((dest / rel).read_bytes()).hexdigest() == h
    ds = load_uci("yacht", dest, split=3)
    assert ds.x_train.shape == (27, 6) and ds.x_test.shape == (3, 6)
    assert [p.name for p in dest.iterdir()] == ["yacht"]  # no staging folder left
    # a second call finds every file in place with its hash and downloads nothing
    for p in srv.rglob("*.txt"):
        p.unlink()
    again = fetch_uci(["yacht"], dest, progress=False, sha256=pins, url_base=url)
    assert again["installed"] == out["installed"]


def test_a_wrong_hash_is_refused_and_leaves_nothing(server, tmp_path):
    srv, url = server
    pins = _write_yacht(srv, np.random.default_rng(1))
    pins["yacht/index_test_7.txt"] = "0" * 64
    dest = tmp_path / "uci"
    with pytest.raises(ValueError, match="SHA256 hash of downloaded file"):
        fetch_uci(["yacht"], dest, progress=False, sha256=pins, url_base=url)
    assert not list(dest.rglob("*")), "a refused download must leave no file behind"


def test_unpinned_required_files_are_refused_before_any_download(server, tmp_path):
    srv, url = server
    _write_yacht(srv, np.random.default_rng(2))
    dest = tmp_path / "uci"
    with pytest.raises(UnpinnedFileError, match="concrete, kin8nm"):
        fetch_uci(["concrete", "kin8nm"], dest, progress=False, url_base=url)
    assert not dest.exists()
    # a pin for every required file but none for the optional ones: those are skipped
    pins = _write_yacht(srv, np.random.default_rng(3), "concrete")
    required = {rel for rel, _, req in uci_files("concrete") if req}
    only = {k: v for k, v in pins.items() if k in required}
    out = fetch_uci(["concrete"], dest, progress=False, sha256=only, url_base=url)
    assert len(out["installed"]["concrete"]) == len(required) == 44
    assert len(out["skipped_unpinned"]["concrete"]) == 12
    assert not (dest / "concrete" / "mc_dropout_results").exists()


def test_cli_download_uci_and_hmc_reference(server, tmp_path, cli, monkeypatch):
    srv, url = server
    pins = _write_yacht(srv, np.random.default_rng(4))
    probs = np.random.default_rng(5).dirichlet(np.ones(10), size=12)
    (srv / "cifar10").mkdir()
    np.savetxt(srv / "cifar10" / "probs.csv", probs, delimiter=",")
    pins["cifar10/probs.csv"] = hashlib.sha256((srv / "cifar10/probs.csv").read_bytes()).hexdigest()
    pin_file = _pin_file(tmp_path / "pins.txt", pins)
    assert read_sha256_file(pin_file) == pins
    # the CLI reads from the registry's URLs: point pooch at the local server instead
    import ppl_bnn.data.download as dl

    for fn in ("fetch_uci", "fetch_hmc_reference"):
        monkeypatch.setattr(dl, fn, functools.partial(getattr(dl, fn), url_base=url))
    rc, out, err = cli(
        "download", "uci", "yacht", f"--data_dir={tmp_path / 'uci'}", f"--sha256={pin_file}"
    )
    assert rc == 0, err
    assert '"dataset": "yacht", "files": 56' in out
    rc, out, err = cli(
        "download", "hmc-reference", "cifar10", f"--data_dir={tmp_path / 'ref'}",
        f"--sha256={pin_file}", "--no_progress",
    )  # fmt: skip
    assert rc == 0, err
    np.testing.assert_allclose(np.loadtxt(tmp_path / "ref/cifar10/probs.csv", delimiter=","), probs)
    rc, _, err = cli("download", "hmc-reference", "imdb", f"--data_dir={tmp_path / 'ref'}")
    assert rc == 2 and "no SHA-256 pinned for imdb/probs.csv" in err
    rc, _, err = cli("download", "uci", "nonesuch", f"--data_dir={tmp_path / 'uci'}")
    assert rc == 2 and "unknown UCI dataset 'nonesuch'" in err


def test_hmc_reference_unpinned_is_refused(tmp_path):
    with pytest.raises(UnpinnedFileError, match="cifar10/probs.csv"):
        fetch_hmc_reference(["cifar10"], tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


def test_registry_covers_the_ten_datasets_with_pins_in_sha256sum_format():
    assert len(UCI_DATASETS) == 10
    pins = read_sha256_lines(UCI_SHA256)
    assert all(len(h) == 64 for h in pins.values())
    for name in ("boston-housing", "energy", "power-plant", "wine-quality-red", "yacht"):
        required = [rel for rel, _, req in uci_files(name) if req]
        assert all(rel in pins for rel in required), name
        assert len(required) == 4 + 2 * 20
    protein = [rel for rel, _, req in uci_files("protein-tertiary-structure") if req]
    assert len(protein) == 4 + 2 * 5 and all(rel in pins for rel in protein)
    for _, url, _ in uci_files("boston-housing")[:1]:
        assert url.endswith("/UCI_Datasets/bostonHousing/data/data.txt") and "6eb4497" in url


def test_year_prediction_msd_is_unpacked_into_the_layout(server, tmp_path):
    import zipfile

    srv, url = server
    rows = np.column_stack([np.arange(1990, 2002), np.random.default_rng(6).normal(size=(12, 3))])
    (srv / "year-prediction-msd").mkdir()
    archive = srv / "year-prediction-msd" / "YearPredictionMSD.txt.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("YearPredictionMSD.txt", "\n".join(",".join(f"{v:g}" for v in r) for r in rows))
    rel = "year-prediction-msd/YearPredictionMSD.txt.zip"
    pins = {rel: hashlib.sha256(archive.read_bytes()).hexdigest()}
    with pytest.raises(UnpinnedFileError, match="year-prediction-msd"):
        fetch_uci(["year-prediction-msd"], tmp_path, progress=False, url_base=url)
    fetch_uci(["year-prediction-msd"], tmp_path, progress=False, sha256=pins, url_base=url)
    folder = tmp_path / "year-prediction-msd"
    assert (folder / "n_splits.txt").read_text() == "1\n"
    ds = load_uci("year-prediction-msd", tmp_path, split=0)
    assert ds.x_train.shape == (11, 3) and ds.x_test.shape == (1, 3)  # the last rows test
    np.testing.assert_allclose(ds.y_test * ds.y_scale + ds.y_mean, [2001.0], rtol=1e-6)


def test_default_is_every_pinned_dataset_and_names_the_others():
    pins = read_sha256_lines(UCI_SHA256)
    plan, skipped, missing = uci_plan(list(UCI_DATASETS), pins)
    unpinned = sorted({m.split("/")[0] for m in missing})
    assert unpinned == ["concrete", "kin8nm", "naval-propulsion-plant", "year-prediction-msd"]
    assert all(plan[n] for n in UCI_DATASETS if n not in unpinned)
    assert not skipped.get("yacht")  # every optional yacht file is pinned too


@pytest.mark.skipif(
    not UCI_DIR.is_dir(), reason=f"no copy of the UCI files at {UCI_DIR} to check pins on"
)
def test_registry_pins_match_the_shared_copies():
    pins = read_sha256_lines(UCI_SHA256)
    checked = 0
    for rel, h in pins.items():
        p = UCI_DIR / rel
        if p.is_file():
            assert hashlib.sha256(p.read_bytes()).hexdigest() == h, rel
            checked += 1
    assert checked == len(pins)
