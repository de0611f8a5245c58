"""Data: toy sets, verified MNIST, labelled splits and preprocessing."""

from scnf.data.mnist import (
    MNIST_FILES,
    MNISTDataError,
    default_data_dir,
    load_mnist,
    verify_mnist,
)
from scnf.data.preprocess import bits_per_dim, dequantize
from scnf.data.splits import (
    MNIST_PER_CLASS,
    TOY_PER_CLASS,
    SplitFileError,
    load_split,
    make_label_split,
    save_split,
)
from scnf.data.toy import DATA_SEED, NUM_TEST, NUM_TRAIN, TEST_SEED, TOY_DATASETS, make_toy

__all__ = [
    "DATA_SEED",
    "MNIST_FILES",
    "MNIST_PER_CLASS",
    "NUM_TEST",
    "NUM_TRAIN",
    "TEST_SEED",
    "TOY_DATASETS",
    "TOY_PER_CLASS",
    "MNISTDataError",
    "SplitFileError",
    "bits_per_dim",
    "default_data_dir",
    "dequantize",
    "load_mnist",
    "load_split",
    "make_label_split",
    "make_toy",
    "save_split",
    "verify_mnist",
]
