"""Datasets of the course: loaders (``images``), generated data (``generators``, ``palindrome``, ``captions``),
augmentation (``augment``) and torch adapters (``torch_data``). Import from the submodules:
``from common.data.images import load_mnist``. The fetcher (``python -m common.data.fetch``) needs only the
standard library, so this package imports nothing at load time."""
