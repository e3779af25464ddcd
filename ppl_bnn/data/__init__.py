"""Data: datasets as numpy arrays (:class:`Dataset`), loaded by name.

* :mod:`ppl_bnn.data.dataset`: the :class:`Dataset` container and the name registry
* :mod:`ppl_bnn.data.builtin`: embedded data (digits, synthetic regression),
  UCI folders, ``.npz`` files
* :mod:`ppl_bnn.data.tfds`: TensorFlow Datasets (CIFAR-10/100, MNIST, IMDB, CIFAR-10-C)
* :mod:`ppl_bnn.data.augment`: image augmentation
"""

from ppl_bnn.data import tfds  # noqa: F401  (registers the TFDS names)
from ppl_bnn.data.builtin import UCI_ALIASES, load_dataset, load_digits, load_uci, uci_data_dir
from ppl_bnn.data.dataset import DATASETS, Dataset, register_dataset

__all__ = [
    "DATASETS",
    "UCI_ALIASES",
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_uci",
    "register_dataset",
    "uci_data_dir",
]
