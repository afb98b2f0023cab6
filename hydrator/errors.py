"""Exceptions raised by the hydrator; each names the object or file concerned."""

from __future__ import annotations


class HydrationError(Exception):
    """Hydration of the local file `path` failed."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class CorruptFileError(HydrationError):
    """An LTX file fetched from the replica failed validation and was not applied.

    `url` is the replica's credential-free URL and `key` the object's key in it."""

    def __init__(self, path: str, url: str, key: str, reason: str) -> None:
        self.url = url
        self.key = key
        self.object = f"{url.rstrip('/')}/{key}" if url else key
        super().__init__(path, f"refused {self.object}: {reason}")


class HydrationStateError(HydrationError):
    """The hydration record beside the file cannot be read or makes no sense."""


class HydrationStoppedError(HydrationError):
    """Hydration was stopped before it completed."""
