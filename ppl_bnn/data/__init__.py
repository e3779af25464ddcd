"""Data: datasets as numpy arrays (:class:`Dataset`), loaded by name.

* :mod:`ppl_bnn.data.dataset`: the :class:`Dataset` container and the name registry
* :mod:`ppl_bnn.data.builtin`: embedded data (digits, synthetic regression),
  UCI folders, ``.npz`` files
* :mod:`ppl_bnn.data.tfds`: TensorFlow Datasets (CIFAR-10/100, MNIST, IMDB, CIFAR-10-C)
* :mod:`ppl_bnn.data.augment`: image augmentation
* :mod:`ppl_bnn.data.download`: pinned-hash downloads of the UCI regression benchmarks
  (:func:`fetch_uci`) and of the published HMC reference (:func:`fetch_hmc_reference`);
  :mod:`ppl_bnn.data.registry` holds their URLs and SHA-256s
"""

from ppl_bnn.data import tfds  # noqa: F401  (registers the TFDS names)
from ppl_bnn.data.builtin import UCI_ALIASES, load_dataset, load_digits, load_uci, uci_data_dir
from ppl_bnn.data.dataset import DATASETS, Dataset, register_dataset
from ppl_bnn.data.download import fetch_hmc_reference, fetch_uci, hmc_reference_dir

__all__ = [
    "DATASETS",
    "UCI_ALIASES",
    "Dataset",
    "fetch_hmc_reference",
    "fetch_uci",
    "hmc_reference_dir",
    "load_dataset",
    "load_digits",
    "load_uci",
    "register_dataset",
    "uci_data_dir",
]
