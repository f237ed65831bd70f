"""Optional C speedups (pyproject.toml holds the metadata). Built by ``pip install -e .`` when a C
compiler and the Python headers are present; skipped otherwise (``optional=True``): the pure-Python
reference path then runs (``cdc --version`` says which). ``CDC_NO_SPEEDUPS=1`` disables them at run time."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("cdc.journal._chunk", sources=["cdc/journal/_speedups/chunk.c"], optional=True, extra_compile_args=["-O2"]),
    ]
)
