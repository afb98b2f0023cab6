"""blockmap: a JuiceFS 1.4-compatible file-system metadata tier.

The metadata is one SQLite database in JuiceFS's schema: `blockmap.db` in an ltxvfs replica
(`file://…`, `s3://…`), or a local file (`sqlite3://…`), opened by `blockmap.meta.connect_meta`;
file bytes are immutable block objects in an object store. `Volume.format` / `Volume.open`, then
path-based operations, each one short metadata transaction (one LTX file).
"""

from blockmap.errors import (
    BlockError,
    BlockmapError,
    CommitOutcomeUnknownError,
    CommitsLostError,
    CorruptMetadataError,
    InvalidMetaURLError,
    VolumeFormatError,
)
from blockmap.fileio import File
from blockmap.meta import connect_meta
from blockmap.node import Attr
from blockmap.volume import DirEntry, Volume, VolumeUsage

__all__ = [
    "Attr",
    "BlockError",
    "BlockmapError",
    "CommitOutcomeUnknownError",
    "CommitsLostError",
    "CorruptMetadataError",
    "DirEntry",
    "File",
    "InvalidMetaURLError",
    "Volume",
    "VolumeFormatError",
    "VolumeUsage",
    "connect_meta",
]
