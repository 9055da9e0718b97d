"""Build the Cython extension for the fast convolution layers (metadata lives in pyproject.toml)."""

from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

pyx = Path(__file__).parent / "common" / "im2col_cython.pyx"
extensions = []
if pyx.exists():
    extensions = cythonize(
        [Extension("common.im2col_cython", ["common/im2col_cython.pyx"], include_dirs=[np.get_include()])],
        compiler_directives={"language_level": "3"},
    )

setup(ext_modules=extensions)
