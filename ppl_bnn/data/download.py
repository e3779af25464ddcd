"""Downloads with pinned hashes: the UCI regression benchmarks and the published HMC reference.

* :func:`fetch_uci`: the ten UCI regression datasets of the Hernandez-Lobato & Adams (2015)
  protocol with their published splits, into ``~/.ppl_bnn/uci/<name>/`` in the standard
  layout (``data.txt``, ``index_features.txt``, ``index_target.txt``,
  ``index_train_<i>.txt``, ``index_test_<i>.txt``, ``n_splits.txt``, ...);
* :func:`fetch_hmc_reference`: the HMC predictive probabilities the NeurIPS 2021
  approximate-inference competition published (CIFAR-10, IMDB), into
  ``~/.ppl_bnn/hmc_reference/<task>/probs.csv``.

Every file is checked against a SHA-256 pinned in :mod:`ppl_bnn.data.registry` (by
``pooch``, which downloads to a temporary file and keeps it only when the hash matches).
A file with no pin is refused unless its hash is supplied (``sha256=``, a
``sha256sum``-format file). A dataset is assembled in a temporary folder next to its
destination and moved into place only when every one of its files matched: a failed
download leaves nothing behind. Files already in place with the right hash are not
downloaded again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ppl_bnn.data.registry import (
    HMC_REFERENCE,
    UCI_COMMIT,
    UCI_DATASETS,
    UCI_RESULT_FILES,
    UCI_SHA256,
    UCI_URL,
)

__all__ = [
    "UnpinnedFileError",
    "data_root",
    "fetch_hmc_reference",
    "fetch_uci",
    "hmc_reference_dir",
    "read_sha256_file",
    "uci_files",
    "uci_plan",
]


class UnpinnedFileError(ValueError):
    """A file the registry has no SHA-256 for (and none was supplied)."""


def data_root() -> Path:
    """Where downloads go: ``$PPL_BNN_DATA``, else ``~/.ppl_bnn``."""
    return Path(os.environ.get("PPL_BNN_DATA") or Path.home() / ".ppl_bnn")


def hmc_reference_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The HMC reference folder: ``data_dir``, else ``<data root>/hmc_reference``."""
    return Path(data_dir) if data_dir else data_root() / "hmc_reference"


def read_sha256_file(path: str | os.PathLike) -> dict[str, str]:
    """``{relative path: hex digest}`` from ``sha256sum`` output (``<hex>  <path>`` lines;
    a ``*`` before the path, binary mode, is allowed)."""
    pins: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}:{n}: not a '<sha256 hex>  <path>' line: {line!r}")
        pins[parts[1].lstrip("*").strip().removeprefix("./")] = digest
    return pins


def read_sha256_lines(text: str) -> dict[str, str]:
    """:func:`read_sha256_file` on a string."""
    out = {}
    for line in text.strip().splitlines():
        digest, rel = line.split(None, 1)
        out[rel.strip()] = digest
    return out


def uci_files(name: str) -> list[tuple[str, str, bool]]:
    """Every file of UCI dataset ``name``: ``(path under the UCI folder, URL, required)``.

    Required: the data and split files (``data/`` upstream). Optional: the MC-dropout
    settings and per-split results, installed when pinned.
    """
    src = UCI_DATASETS[name]
    if src.archive:
        return [(f"{name}/{Path(src.archive).name}", src.archive, True)]
    url = lambda part, f: UCI_URL.format(  # noqa: E731
        commit=UCI_COMMIT, folder=src.folder, part=part, file=f
    )
    data = ["data.txt", "index_features.txt", "index_target.txt", "n_splits.txt"]
    data += [f"index_{s}_{i}.txt" for i in range(src.n_splits) for s in ("train", "test")]
    settings = ["n_hidden.txt", "n_epochs.txt", "dropout_rates.txt", "tau_values.txt"]
    return (
        [(f"{name}/{f}", url("data", f), True) for f in data]
        + [(f"{name}/{f}", url("data", f), False) for f in settings]
        + [(f"{name}/mc_dropout_results/{f}", url("results", f), False) for f in UCI_RESULT_FILES]
    )


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _install(
    items: list[tuple[str, str, str]],
    root: Path,
    group: str,
    progress: bool,
    downloader: Any = None,
) -> list[Path]:
    """Download ``(relative path, URL, sha256)`` items into ``root`` all or nothing."""
    import pooch

    todo = [(rel, url, h) for rel, url, h in items if not _matches(root / rel, h)]
    if not todo:
        return [root / rel for rel, _, _ in items]
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{group}-", dir=root))
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # one progress bar, not a log line per file
    bar = None
    if progress and len(todo) > 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=group, unit="file")
    try:
        for rel, url, digest in todo:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            pooch.retrieve(
                url,
                known_hash=f"sha256:{digest}",
                fname=dest.name,
                path=dest.parent,
                progressbar=progress and bar is None,
                downloader=downloader,
            )
            if bar is not None:
                bar.update(1)
        for rel, _, _ in todo:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, root / rel)
    finally:
        logger.setLevel(level)
        if bar is not None:
            bar.close()
        shutil.rmtree(staging, ignore_errors=True)
    return [root / rel for rel, _, _ in items]


def _matches(path: Path, digest: str) -> bool:
    return path.is_file() and _sha256(path) == digest


def _pins(sha256: str | os.PathLike | Mapping[str, str] | None) -> dict[str, str]:
    if sha256 is None:
        return {}
    if isinstance(sha256, Mapping):
        return {k: v.lower() for k, v in sha256.items()}
    return read_sha256_file(sha256)


def _names(names: Iterable[str] | None, known: Mapping[str, Any], what: str) -> list[str]:
    from ppl_bnn.data.builtin import UCI_ALIASES

    out = []
    for n in list(names) if names else list(known):
        n = UCI_ALIASES.get(n, n) if known is UCI_DATASETS else n
        if n not in known:
            raise ValueError(f"unknown {what} {n!r}; choose from {', '.join(known)}")
        out.append(n)
    return out


def fetch_uci(
    names: Iterable[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    sha256: str | os.PathLike | Mapping[str, str] | None = None,
    downloader: Any = None,
    url_base: str | None = None,
) -> dict[str, Any]:
    """Download UCI regression datasets with their published splits (default: all ten).

    Args:
        names: dataset names (or the loader's aliases: ``boston``, ``power``, ``wine``,
            ``naval``); ``None``: every dataset of :data:`~ppl_bnn.data.registry.UCI_DATASETS`.
        data_dir: the UCI folder (default: :func:`ppl_bnn.data.uci_data_dir`, i.e.
            ``$PPL_BNN_UCI_DIR`` or ``~/.ppl_bnn/uci``).
        progress: show a progress bar per dataset.
        sha256: extra pins, a ``sha256sum``-format file or ``{path: hex}``, paths relative to
            the UCI folder (``concrete/data.txt``); they override the registry's.
        downloader: a ``pooch`` downloader (default: pooch's HTTP downloader).
        url_base: fetch from this base URL instead, with the same relative paths as the
            installed layout (``<url_base>/<name>/data.txt``): a mirror, or a test server.

    Returns:
        ``{"data_dir": ..., "installed": {name: [paths]}, "skipped_unpinned": {name: [paths]},
        "unpinned_datasets": [names]}``: optional files without a pin are skipped and
        listed; with ``names=None``, datasets whose required files are not all pinned are
        skipped and listed in ``unpinned_datasets``.

    Raises:
        UnpinnedFileError: a required file of a dataset named in ``names`` has no pin;
            raised before anything is downloaded.
        ValueError: a downloaded file's hash differs from its pin (pooch's message); that
            dataset's files are removed, datasets installed before it stay.
    """
    from ppl_bnn.data.builtin import uci_data_dir

    root = uci_data_dir(data_dir)
    pins = {**read_sha256_lines(UCI_SHA256), **_pins(sha256)}
    chosen = _names(names, UCI_DATASETS, "UCI dataset")
    plan, skipped, missing = uci_plan(chosen, pins, url_base)
    unpinned = sorted({m.split("/")[0] for m in missing})
    if missing and names:
        raise UnpinnedFileError(
            f"no SHA-256 pinned for {len(missing)} required file(s) of {', '.join(unpinned)} "
            f"(e.g. {missing[0]}): nothing was downloaded. Supply the hashes of copies you "
            "have checked with sha256=FILE (`ppl-bnn download uci --sha256 FILE`, "
            "`sha256sum` format, paths like concrete/data.txt); see docs/uci.md"
        )
    chosen = [n for n in chosen if n not in unpinned]  # all by default: the pinned ones
    installed = {}
    for name in chosen:
        paths = _install(plan[name], root, name, progress, downloader)
        if UCI_DATASETS[name].archive:
            paths = _unpack_year(root / name, paths[0])
        installed[name] = [str(p) for p in paths]
    return {
        "data_dir": str(root),
        "installed": installed,
        "skipped_unpinned": skipped,
        "unpinned_datasets": unpinned,
    }


def uci_plan(
    chosen: list[str], pins: Mapping[str, str], url_base: str | None = None
) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, list[str]], list[str]]:
    """What :func:`fetch_uci` would fetch: ``(plan, skipped, missing)``, with ``plan``
    ``{name: [(path, URL, sha256)]}``, ``skipped`` the optional files without a pin, and
    ``missing`` the required files without one."""
    plan: dict[str, list[tuple[str, str, str]]] = {}
    skipped: dict[str, list[str]] = {}
    missing: list[str] = []
    for name in chosen:
        plan[name] = []
        for rel, url, required in uci_files(name):
            if url_base:
                url = f"{url_base.rstrip('/')}/{rel}"
            if rel in pins:
                plan[name].append((rel, url, pins[rel]))
            elif required:
                missing.append(rel)
            else:
                skipped.setdefault(name, []).append(rel)
    return plan, skipped, missing


def _unpack_year(folder: Path, archive: Path) -> list[Path]:
    """UCI's ``YearPredictionMSD.txt.zip`` (CSV, the year first) in the standard layout,
    with its one documented split: the first 463,715 rows train, the last 51,630 test."""
    if (folder / "n_splits.txt").is_file():
        return sorted(folder.iterdir())
    n_train = 463_715
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder))
    try:
        rows = 0
        with zipfile.ZipFile(archive) as z, open(tmp / "data.txt", "w") as out:
            member = next(m for m in z.namelist() if m.endswith(".txt"))
            with z.open(member) as f:
                for line in f:
                    out.write(line.decode().strip().replace(",", " ") + "\n")
                    rows += 1
        with open(tmp / "data.txt") as f:
            cols = len(f.readline().split())
        (tmp / "index_target.txt").write_text("0\n")
        (tmp / "index_features.txt").write_text("".join(f"{i}\n" for i in range(1, cols)))
        n_train = min(n_train, rows - 1)
        (tmp / "index_train_0.txt").write_text("".join(f"{i}\n" for i in range(n_train)))
        (tmp / "index_test_0.txt").write_text("".join(f"{i}\n" for i in range(n_train, rows)))
        (tmp / "n_splits.txt").write_text("1\n")
        for p in tmp.iterdir():
            os.replace(p, folder / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(p for p in folder.iterdir() if p.is_file())


def fetch_hmc_reference(
    names: Iterable[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    sha256: str | os.PathLike | Mapping[str, str] | None = None,
    downloader: Any = None,
    url_base: str | None = None,
) -> dict[str, Any]:
    """Download the competition's HMC predictive probabilities (default: cifar10 and imdb).

    Installs ``<data_dir>/<task>/probs.csv`` (default folder: :func:`hmc_reference_dir`).
    ``sha256``, ``downloader`` and ``url_base`` are as in :func:`fetch_uci`; pin paths are
    ``<task>/probs.csv``. A task whose file has no pin raises :class:`UnpinnedFileError`
    before anything is downloaded.
    """
    root = hmc_reference_dir(data_dir)
    pins = _pins(sha256)
    chosen = _names(names, HMC_REFERENCE, "HMC reference")
    items = []
    for name in chosen:
        src, rel = HMC_REFERENCE[name], f"{name}/probs.csv"
        digest = pins.get(rel, src.sha256)
        if digest is None:
            raise UnpinnedFileError(
                f"no SHA-256 pinned for {rel}: nothing was downloaded. Supply the hash of a "
                "copy you have checked with sha256=FILE (`ppl-bnn download hmc-reference "
                "--sha256 FILE`, `sha256sum` format); see docs/uci.md"
            )
        url = f"{url_base.rstrip('/')}/{rel}" if url_base else src.url
        items.append((name, rel, url, digest))
    installed = {}
    for name, rel, url, digest in items:
        paths = _install([(rel, url, digest)], root, name, progress, downloader)
        installed[name] = [str(p) for p in paths]
    return {"data_dir": str(root), "installed": installed}
