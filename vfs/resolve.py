"""Which replica a database name reads: URI `replica=`, a Python registration, the environment,
then the embedded default (a `file://` replica in `<name>-ltx/` beside the name)."""

from __future__ import annotations

import os

from vfs.process import REPLICA_NAMES

#: Environment variable naming the replica of every database without a more specific setting.
ENV_REPLICA_URL = "LTXVFS_REPLICA_URL"
#: The embedded default replica directory is the database path plus this suffix.
DEFAULT_REPLICA_SUFFIX = "-ltx"

def _normal(name: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(name))


def register_replica(name: str | os.PathLike[str], url: str) -> None:
    """Make the database `name` (a path, relative to the current directory) read replica `url`."""
    with REPLICA_NAMES.lock:
        REPLICA_NAMES.entries[_normal(name)] = url


def unregister_replica(name: str | os.PathLike[str]) -> None:
    """Forget a registration made with `register_replica`."""
    with REPLICA_NAMES.lock:
        REPLICA_NAMES.entries.pop(_normal(name), None)


def default_replica_url(path: str) -> str:
    """The embedded default: `file://<path>-ltx`."""
    return "file://" + _normal(path) + DEFAULT_REPLICA_SUFFIX


def resolve_replica(path: str, uri_replica: str | None) -> str:
    """The replica URL for the database at `path` (absolute, as SQLite hands it to xOpen)."""
    if uri_replica:
        return uri_replica
    with REPLICA_NAMES.lock:
        url = REPLICA_NAMES.entries.get(_normal(path))
    if url:
        return url
    env = os.environ.get(ENV_REPLICA_URL)
    if env:
        return env
    return default_replica_url(path)
