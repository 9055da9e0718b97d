"""Shared library of the deep-learning course: NumPy layers, solvers, data loaders and PyTorch helpers.

Submodules are imported explicitly (``from common.layers import affine_forward``); importing
``common`` itself is cheap and pulls in nothing heavy.
"""

__version__ = "0.1.0"
