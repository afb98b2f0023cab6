"""ltxvfs: SQLite databases read straight from LTX replicas in an object store.

`import vfs` registers the APSW VFS `ltxvfs`:

    apsw.Connection("file:x.db?replica=s3%3A%2F%2Fbucket%2Fx&mode=ro", vfs="ltxvfs",
                    flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)

A name finds its replica by URI `replica=`, then `register_replica(name, url)`, then the
environment variable LTXVFS_REPLICA_URL, then `file://<name>-ltx`.
"""

from __future__ import annotations

from vfs.resolve import ENV_REPLICA_URL, register_replica, unregister_replica
from vfs.vfs import LTXVFS, VFS_NAME

__all__ = ["ENV_REPLICA_URL", "LTXVFS", "VFS_NAME", "register_replica", "unregister_replica", "registered"]

#: The VFS registered at import.
registered = LTXVFS()
