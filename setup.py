"""Build hook for the C extensions (the rest of the metadata is in pyproject.toml).

Both are optional: where one cannot be compiled the install still succeeds. Without ltx._frames,
ltx.decoder uses its pure-Python frame loop (same checks, same results, slower); without
blockmap._fusefalloc (it needs libfuse 3's headers), `blockmap mount` answers fallocate(2) with
EOPNOTSUPP."""

import shlex
import subprocess

from setuptools import Extension, setup


def pkg_config(package: str) -> tuple[list[str], list[str]] | None:
    """(include dirs, libraries) of `package` from pkg-config, or None where it is not there."""
    try:
        cflags = subprocess.run(["pkg-config", "--cflags-only-I", package], capture_output=True, text=True,
                                check=True).stdout
        libs = subprocess.run(["pkg-config", "--libs-only-l", package], capture_output=True, text=True,
                              check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [f[2:] for f in shlex.split(cflags)], [f[2:] for f in shlex.split(libs)]


extensions = [Extension("ltx._frames", ["ltx/_frames.c"], optional=True, extra_compile_args=["-O3"])]
fuse3 = pkg_config("fuse3")
if fuse3 is not None:
    extensions.append(Extension("blockmap._fusefalloc", ["blockmap/_fusefalloc.c"], optional=True,
                                include_dirs=fuse3[0], libraries=fuse3[1]))

setup(ext_modules=extensions)
