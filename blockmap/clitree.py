"""Copies between the local file system and a volume for the CLI: one file (put, get), a tree
(`put -r`, `get -r`), and the walk behind `ls -R`. Everything runs in the one process and volume
the command opened, so a tree of many files costs what the Python API costs (each file one
upload and one transaction, shipped in group-commit batches), not a process per file.

Local trees hold directories, regular files and symbolic links (copied as links, never followed);
anything else is refused naming it. A file lands in the volume atomically (`Volume.replace_file`)
and on the local disk through a temporary file renamed over its name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat as statmod
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from blockmap.engine import DirEntry
from blockmap.errors import fs_error
from blockmap.node import TYPE_SYMLINK, Attr
from blockmap.volume import Volume
from ltx.clifmt import ProgressReader, ProgressWriter, progress_bar

#: `get` writes into a temporary file beside the local target with this suffix, then renames it.
GET_TEMP_SUFFIX = ".blockmap-get"
#: Files from this size on get a progress bar (when bars are shown: on a terminal, or --progress).
PROGRESS_MIN_BYTES = 8 << 20


@dataclass
class CopyStats:
    """What a copy did: regular files (and their bytes), directories, symbolic links; and whether
    large files show a progress bar on stderr."""

    files: int = 0
    bytes: int = 0
    dirs: int = 0
    links: int = 0
    progress: bool = False


def put_stream(vol: Volume, src: BinaryIO, dst: str, mode: int) -> Attr:
    """Copy `src` into the volume as a new file at `dst` (`Volume.replace_file`): the blocks go up
    first, then one transaction creates the file and replaces `dst` as a rename over it would.
    Readers see the old file or the whole new one, and a failed copy leaves `dst` as it was."""
    return vol.replace_file(dst, src, mode)


def _local_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def get_to_local(copy: Callable[[BinaryIO], int], dest: str, mode: int) -> int:
    """Write a local file through a temporary file beside it, fsync, rename: a failed copy never
    leaves a partial `dest` behind (nor replaces an existing one)."""
    directory = os.path.dirname(os.path.abspath(dest))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(dest) + ".", suffix=GET_TEMP_SUFFIX)
    except OSError as exc:  # name the user's path, not the temporary one
        raise fs_error(exc.errno or errno.EIO, dest) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            n = copy(out)
            out.flush()
            os.fchmod(out.fileno(), mode & 0o7777 & ~_local_umask())
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return n


def put_file(vol: Volume, local: str, dst: str, stats: CopyStats) -> None:
    """One local regular file into the volume at `dst`."""
    with open(local, "rb") as src:
        st = os.fstat(src.fileno())
        if statmod.S_ISDIR(st.st_mode):
            raise fs_error(errno.EISDIR, local)
        show = stats.progress and st.st_size >= PROGRESS_MIN_BYTES
        with progress_bar(f"put {os.path.basename(local)}", show) as on_progress:
            body: BinaryIO = src
            if on_progress is not None:
                body = ProgressReader(src, on_progress, st.st_size)  # type: ignore[assignment]
            put_stream(vol, body, dst, statmod.S_IMODE(st.st_mode))
    stats.files += 1
    stats.bytes += st.st_size


def _clear_for(vol: Volume, dst: str, want_dir: bool) -> bool:
    """Make room at `dst` for a new entry (as cp -r does): an existing directory stays when a
    directory is wanted; a symlink or file gives way. Return whether `dst` is a directory now."""
    try:
        attr = vol.lstat(dst)
    except FileNotFoundError:
        return False
    if attr.is_dir():
        if not want_dir:
            raise fs_error(errno.EISDIR, dst)
        return True
    if want_dir or attr.is_symlink():
        vol.unlink(dst)
    return False


def put_tree(vol: Volume, local: str, dst: str, stats: CopyStats) -> None:
    """The local directory `local` into the volume as `dst` (created, or merged into when it
    exists), recursively, entries in name order."""
    st = os.lstat(local)
    if not _clear_for(vol, dst, want_dir=True):
        vol.mkdir(dst, statmod.S_IMODE(st.st_mode))
        stats.dirs += 1
    with os.scandir(local) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        target = posixpath.join(dst, entry.name)
        if entry.is_symlink():
            _clear_for(vol, target, want_dir=False)
            vol.symlink(os.readlink(entry.path), target)
            stats.links += 1
        elif entry.is_dir(follow_symlinks=False):
            put_tree(vol, entry.path, target, stats)
        elif entry.is_file(follow_symlinks=False):
            put_file(vol, entry.path, target, stats)
        else:
            raise OSError(errno.EINVAL, "not a regular file, directory or symbolic link", entry.path)


def get_file(vol: Volume, path: str, dest: str, stats: CopyStats) -> None:
    """One volume file to the local path `dest`."""
    with vol.open_file(path) as f:
        attr = f.stat()
        show = stats.progress and attr.st_size >= PROGRESS_MIN_BYTES
        with progress_bar(f"get {posixpath.basename(path)}", show) as on_progress:
            copy: Callable[[BinaryIO], int] = f.copy_to
            if on_progress is not None:
                bar = on_progress

                def counted(out: BinaryIO) -> int:
                    return f.copy_to(ProgressWriter(out, bar, attr.st_size))  # type: ignore[arg-type]

                copy = counted
            n = get_to_local(copy, dest, statmod.S_IMODE(attr.st_mode))
    stats.files += 1
    stats.bytes += n


def get_tree(vol: Volume, path: str, dest: str, stats: CopyStats) -> None:
    """The volume directory `path` to the local directory `dest` (created, or merged into),
    recursively; symbolic links are made as links."""
    if not (os.path.isdir(dest) and not os.path.islink(dest)):
        os.mkdir(dest, statmod.S_IMODE(vol.stat(path).st_mode) | 0o700)  # owner keeps access to fill it
        stats.dirs += 1
    for entry in vol.readdir(path):
        child = posixpath.join(path, entry.name)
        target = os.path.join(dest, entry.name)
        if entry.is_dir():
            get_tree(vol, child, target, stats)
        elif entry.type == TYPE_SYMLINK:
            if os.path.lexists(target):
                os.unlink(target)
            os.symlink(vol.readlink(child), target)
            stats.links += 1
        else:
            get_file(vol, child, target, stats)


def walk(vol: Volume, path: str, *, with_attrs: bool = False) -> Iterator[tuple[str, list[DirEntry]]]:
    """(directory, its entries) for `path` and every directory below it, depth first, in name
    order (as `ls -R` lists them)."""
    entries = list(vol.readdir(path, with_attrs=with_attrs))
    yield path, entries
    for entry in entries:
        if entry.is_dir():
            yield from walk(vol, posixpath.join(path, entry.name), with_attrs=with_attrs)
