"""A replica: the LTX files of one database in an object store, laid out as Litestream 0.5.17 does.

`file://ROOT` keeps level L under `ltx/<L>/`; `s3://BUCKET/PATH` under `<L as %04x>/`. Keys that
are not LTX file names are skipped when listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from ltx.names import MAX_TXID, above_level_0, format_filename, level_prefix, parse_filename
from ltx.pagesums import SUMS_SUFFIX, PageSums, sums_key
from ltx.plan import SNAPSHOT_LEVEL, LTXFileInfo
from ltx.reader import FileIndex, read_file_index
from ltx.store import ObjectStore, open_store
from ltx.store.base import ObjectInfo

LEVELS = tuple(range(SNAPSHOT_LEVEL + 1))
#: Threads used to list levels and fetch indexes in parallel.
DEFAULT_PARALLELISM = 16


class Replica:
    """The LTX files of one database in one store."""

    def __init__(self, store: ObjectStore, scheme: str) -> None:
        self.store = store
        self.scheme = scheme

    @classmethod
    def open(cls, url: str) -> Replica:
        """Open the replica at a Litestream replica URL."""
        store = open_store(url)
        return cls(store, store.url.split(":", 1)[0])  # the layout follows the store (a plain path is file)

    @property
    def url(self) -> str:
        return self.store.url

    def key(self, level: int, min_txid: int, max_txid: int) -> str:
        return level_prefix(self.scheme, level) + format_filename(min_txid, max_txid)

    def list_level(self, level: int, seek: int = 0) -> list[LTXFileInfo]:
        """A level's files with min TXID >= `seek`, sorted by (min, max) TXID."""
        return list(self.iter_level(level, seek))

    def iter_level(self, level: int, seek: int = 0) -> Iterator[LTXFileInfo]:
        """A level's files in key order, each with its sidecar's size when one is listed (it
        sorts right after its file)."""
        prefix = level_prefix(self.scheme, level)
        start_after = prefix + format_filename(seek - 1, MAX_TXID) if seek > 1 else ""
        return self.level_files(level, self.store.list(prefix, start_after))

    def level_files(self, level: int, objects: Iterable[ObjectInfo]) -> Iterator[LTXFileInfo]:
        """The files of `level` in a key-ordered listing of that level's prefix."""
        prefix = level_prefix(self.scheme, level)
        for obj, found in _with_sidecars(objects, prefix):
            yield LTXFileInfo(level, found[0], found[1], obj.size, obj.modified, obj.key, found[2])

    def level_of_key(self, key: str) -> tuple[int, str] | None:
        """(level, file name) of a key of this replica's layout, or None for any other key."""
        parts = key.split("/")
        if self.scheme == "file":
            if len(parts) != 3 or parts[0] != "ltx" or not parts[1].isdigit():
                return None
            level = int(parts[1])
        else:
            if len(parts) != 2 or len(parts[0]) != 4:
                return None
            try:
                level = int(parts[0], 16)
            except ValueError:
                return None
        if level not in LEVELS or parts[-2] != level_prefix(self.scheme, level).split("/")[-2]:
            return None
        return level, parts[-1]

    def list_all(self, start_after: str = "") -> dict[int, list[LTXFileInfo]]:
        """Every level from one listing of the whole replica (S3: ListObjectsV2 over the prefix
        without a delimiter, one request per 1000 keys; file: one walk), or of the keys after
        `start_after` (`ABOVE_LEVEL_0`: every level but 0). Other keys are skipped."""
        return self.levels_of(self.store.list("", start_after))

    def levels_of(self, objects: Iterable[ObjectInfo]) -> dict[int, list[LTXFileInfo]]:
        """Every level's files in a key-ordered listing of the whole replica (or of its keys
        after some key); other keys are skipped."""
        levels: dict[int, list[LTXFileInfo]] = {lvl: [] for lvl in LEVELS}
        for obj, found in _with_sidecars(objects, ""):
            where = self.level_of_key(obj.key)
            if where is None:
                continue
            levels[where[0]].append(LTXFileInfo(where[0], found[0], found[1], obj.size, obj.modified, obj.key,
                                                found[2]))
        for files in levels.values():
            files.sort(key=lambda f: (f.min_txid, f.max_txid))
        return levels

    @property
    def above_level_0(self) -> str:
        """A key after every level-0 key and before every other level's (for `list_all`)."""
        return above_level_0(self.scheme)

    def list_levels(self, levels: tuple[int, ...] = LEVELS, seeks: dict[int, int] | None = None,
                    parallelism: int = DEFAULT_PARALLELISM) -> dict[int, list[LTXFileInfo]]:
        """List several levels at once, in parallel (one round trip when each fits one LIST page)."""
        seeks = seeks or {}
        with ThreadPoolExecutor(max_workers=min(parallelism, len(levels)) or 1) as pool:
            results = pool.map(lambda lvl: self.list_level(lvl, seeks.get(lvl, 0)), levels)
            return dict(zip(levels, results, strict=True))

    def open_file(self, info: LTXFileInfo) -> BinaryIO:
        return self.store.open(info.key)

    def read_index(self, info: LTXFileInfo) -> FileIndex:
        return read_file_index(self.store, info.key)

    def put_file(self, level: int, min_txid: int, max_txid: int, data: bytes | BinaryIO,
                 timestamp_ms: int, if_absent: bool = True) -> str:
        """Store one LTX file; with `if_absent` a taken name raises ObjectExistsError."""
        key = self.key(level, min_txid, max_txid)
        self.store.put(key, data, if_absent=if_absent, timestamp_ms=timestamp_ms)
        return key

    def put_sums(self, key: str, sums: PageSums, timestamp_ms: int) -> str:
        """Store the page checksum sidecar of the LTX file `key` (put it before the file itself,
        so that a listed file has its sidecar; it overwrites one a crashed writer left)."""
        skey = sums_key(key)
        self.store.put(skey, sums.encode(), timestamp_ms=timestamp_ms)
        return skey

    def delete_file(self, info: LTXFileInfo) -> None:
        """Delete a file, then its sidecar when one was listed."""
        self.store.delete(info.key)
        if info.sums_key is not None:
            self.store.delete(info.sums_key)

    def close(self) -> None:
        self.store.close()


def _with_sidecars(objects: Iterable[ObjectInfo], prefix: str) -> Iterator[tuple[ObjectInfo, tuple[int, int, int]]]:
    """LTX files of a key-ordered listing, each with (min TXID, max TXID, sidecar size or 0): a
    sidecar sorts right after its file (`X.ltx` < `X.ltx.sum`)."""
    pending: tuple[ObjectInfo, tuple[int, int]] | None = None
    for obj in objects:
        name = obj.key[len(prefix):].rsplit("/", 1)[-1]
        if pending is not None and obj.key == pending[0].key + SUMS_SUFFIX:
            yield pending[0], (*pending[1], obj.size)
            pending = None
            continue
        if pending is not None:
            yield pending[0], (*pending[1], 0)
            pending = None
        txids = parse_filename(name)
        if txids is not None:
            pending = (obj, txids)
    if pending is not None:
        yield pending[0], (*pending[1], 0)
