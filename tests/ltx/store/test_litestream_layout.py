"""The stores read what the real `litestream` 0.5.17 writes: its keys, and the LTX timestamp it
records (S3 metadata `litestream-timestamp`, file mtime) equal what our stores record."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ltx.store import ObjectStore, open_store
from ltx.store.s3_metadata import format_timestamp
from tests import litestream
from tests.s3server import S3Server

LEVEL0 = {"file": ("ltx/0/", r"^ltx/0/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$"),
          "s3": ("0000/", r"^0000/[0-9a-f]{16}-[0-9a-f]{16}\.ltx$")}


def header_timestamp(store: ObjectStore, key: str) -> int:
    header = store.get_range(key, 0, 100)
    assert header[:4] == b"LTX1"
    return int.from_bytes(header[32:40], "big", signed=True)


def more_than(store: ObjectStore, prefix: str, count: int) -> Callable[[], bool]:
    return lambda: len(list(store.list(prefix))) > count


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_litestream_objects_carry_the_header_timestamp(request: pytest.FixtureRequest, tmp_path: Path,
                                                        backend: str) -> None:
    url: str = request.getfixturevalue(f"{backend}_url")
    env = request.getfixturevalue("s3_server").env() if backend == "s3" else None
    store = open_store(url)
    prefix, pattern = LEVEL0[backend]
    db_path = tmp_path / "src.db"
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    config = litestream.write_config(tmp_path / "litestream.yml", db_path, url)
    with litestream.Replicator(config, env=env) as proc:
        proc.wait_for(lambda: list(store.list(prefix)), "litestream's first LTX file")
        for i in range(3):
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"row {i}" * 50,))
            proc.wait_for(more_than(store, prefix, len(list(store.list(prefix)))), f"LTX file after insert {i}")
        # A file is listed once renamed into place, before its mtime is set: a SIGKILL now (leaving
        # the block) could fall in between. SIGTERM lets litestream finish what it writes.
        proc.stop()
    conn.close()
    # Only finished files count (not a `.ltx.tmp`).
    infos = [info for info in store.list(prefix) if not info.key.endswith(".tmp")]
    assert len(infos) >= 4
    for info in infos:
        assert re.match(pattern, info.key), info.key
        ts = header_timestamp(store, info.key)
        assert store.head(info.key).timestamp_ms == ts
        if backend == "s3":
            server: S3Server = request.getfixturevalue("s3_server")
            bucket_key = url.split("?")[0].split("/", 3)[3] + "/" + info.key
            raw = server.client().head_object(Bucket=server.bucket, Key=bucket_key)
            assert raw["Metadata"]["litestream-timestamp"] == format_timestamp(ts)
