"""Build hook for the one C extension, ltx._frames (the rest of the metadata is in pyproject.toml).

The extension is optional: where it cannot be compiled, ltx.decoder falls back to its pure-Python
frame loop (same checks, same results, slower)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ltx._frames", ["ltx/_frames.c"], optional=True, extra_compile_args=["-O3"])])
