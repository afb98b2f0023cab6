"""Errors raised by blockmap.

File-system operations fail like the OS does: an `OSError` subclass with the right `errno` and the
path concerned (`fs_error`). Damage found in the metadata or in the block objects is a
`BlockmapError` naming the object and what is wrong with it.
"""

from __future__ import annotations

import errno as _errno
import os

#: ENOATTR is ENODATA on Linux (what getxattr(2) returns for a missing attribute).
ENOATTR = getattr(_errno, "ENOATTR", _errno.ENODATA)


def fs_error(code: int, path: str | bytes | None = None, path2: str | bytes | None = None) -> OSError:
    """Build the OSError subclass that the OS would raise for `code` (FileNotFoundError for ENOENT...)."""
    message = os.strerror(code)
    if path2 is not None:
        return OSError(code, message, path, None, path2)
    if path is not None:
        return OSError(code, message, path)
    return OSError(code, message)


class BlockmapError(Exception):
    """Base class: something about volume `what` is wrong (`reason`)."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class VolumeFormatError(BlockmapError):
    """The volume's settings are missing, unreadable, or use a feature blockmap does not support."""


class CorruptMetadataError(BlockmapError):
    """A metadata row is malformed (a slice list that is not a multiple of 24 bytes, a bad counter...)."""


class BlockError(BlockmapError):
    """A block object is missing or has the wrong size."""


class UploadStalledError(BlockmapError):
    """Write-back: the upload budget stayed full while no upload finished (the store is down)."""

    def __init__(self, held: int, seconds: float) -> None:
        self.held = held
        self.seconds = seconds
        super().__init__("write buffer", f"{held} bytes of blocks wait for their upload and none finished "
                                         f"in {seconds:g}s (is the store reachable?)")


class InvalidMetaURLError(BlockmapError):
    """A metadata URL blockmap cannot open."""


class CommitsLostError(BlockmapError):
    """Group-committed metadata transactions never reached the store (another writer committed
    first): operations that had returned are gone, and the volume reloaded the replica's state."""


class CommitOutcomeUnknownError(BlockmapError):
    """A metadata COMMIT failed in a way that leaves open whether it reached the store (the store
    failed after its retries). Blocks it refers to are kept: if the commit is not in the store,
    `gc` finds them leaked; if it is, nothing refers to a missing object."""


class WriterFencedError(BlockmapError):
    """Another writer committed to the metadata while this exclusive writer (a mount) held state
    derived from the older one: it stops writing rather than build on a view it did not see."""
