"""Optional C extension of ``cdc dump-wal`` (the package metadata is in pyproject.toml).

``cdc.cli._dumpfast`` renders keys-only dump lines in C; without a compiler the build goes on
without it (``optional=True``) and ``cdc dump-wal`` uses its pure-Python path (also forced with
``CDC_NO_SPEEDUPS=1``). In a checkout: ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cdc.cli._dumpfast",
            sources=["cdc/cli/_dumpfast_c/dumpfast.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
