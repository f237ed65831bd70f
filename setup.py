"""Build of the optional C extensions (cdc.format._speedups, cdc.cli._dumpfast); pyproject.toml holds the metadata.

``optional=True``: without a C compiler (or Python headers) the build of the extension fails
quietly and cdc runs its pure-Python path (``cdc --version`` says which one runs).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "cdc.format._speedups",
            sources=[
                "cdc/format/_speedups/module.c",
                "cdc/format/_speedups/crc32c.c",
                "cdc/format/_speedups/walscan.c",
                "cdc/format/_speedups/build.c",
                "cdc/format/_speedups/chunk.c",
            ],
            depends=["cdc/format/_speedups/speedups.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        # `cdc dump-wal`'s keys/values renderer (framing + CRC32C + default-cf Puts -> JSON lines)
        Extension(
            "cdc.cli._dumpfast",
            sources=["cdc/cli/_dumpfast_c/dumpfast.c", "cdc/format/_speedups/crc32c.c"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
