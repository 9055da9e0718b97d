"""Datasets of the course: loaders for CIFAR-10, MNIST and Fashion-MNIST, generators, torch adapters.

The names below are imported lazily, so ``python -m common.data.fetch`` (the downloader) runs with
the standard library alone, before NumPy is installed.
"""
from importlib import import_module

_EXPORTS = {
    "ImageData": "images",
    "DatasetNotFoundError": "images",
    "load_cifar10": "images",
    "load_mnist": "images",
    "load_fashion_mnist": "images",
    "load_image_classification": "images",
    "get_classification_data": "images",
    "read_idx": "images",
    "load_sample_photos": "images",
    "make_moons": "generators",
    "make_circles": "generators",
    "make_blobs": "generators",
    "make_gaussian_clouds": "generators",
    "ArrayDataset": "torch_data",
    "make_loader": "torch_data",
    "channel_stats": "augment",
    "normalize": "augment",
    "denormalize": "augment",
    "random_crop": "augment",
    "random_flip": "augment",
    "Augment": "augment",
    "TensorBatches": "augment",
    "PalindromeDataset": "palindrome",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
