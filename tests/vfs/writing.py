"""Helpers for write-path tests: writer and reader connections, restores by the real tools, the
litestream-vfs extension in a child process, and the LTX files of a replica."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import apsw

import vfs
from ltx.decoder import Decoder
from ltx.header import Header
from ltx.plan import LTXFileInfo
from ltx.replica import Replica
from tests.ltx.sqlgen import TABLES, Step, dump_rows
from tests.vfs.replicas import uri
from vfs.process import peers
from vfs.writefile import LTXWriteFile

LTXCTL = Path(sys.executable).parent / "ltxctl"
RW = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
RO = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
#: Deadline of a child process (restore, litestream-vfs).
CHILD_TIMEOUT = 120.0


def open_writer(path: Path | str, replica: str, **params: Any) -> apsw.Connection:
    """A read-write ltxvfs connection (the writer); `poll=0` unless given."""
    assert vfs.VFS_NAME == "ltxvfs"
    params.setdefault("poll", 0)
    conn = apsw.Connection(uri(path, replica, **params), vfs="ltxvfs", flags=RW)
    conn.setbusytimeout(5000)
    return conn


def open_reader(path: Path | str, replica: str, **params: Any) -> apsw.Connection:
    """A read-only ltxvfs connection that does not follow (`poll=0`) unless told."""
    params.setdefault("poll", 0)
    return apsw.Connection(uri(path, replica, **params), vfs="ltxvfs", flags=RO)


def write_file(url: str) -> LTXWriteFile:
    """The (only) open writer file of replica `url` in this process."""
    replica = Replica.open(url)
    key = replica.url
    replica.close()
    files = [f for f in peers().others(key, None) if isinstance(f, LTXWriteFile)]
    assert len(files) == 1, f"expected one open writer of {url}, found {len(files)}"
    return files[0]


def stats(conn: apsw.Connection) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(conn.execute("PRAGMA ltxvfs_stats").fetchall()[0][0])
    return result


def txid(conn: apsw.Connection) -> int:
    return int(conn.execute("PRAGMA litestream_txid").fetchall()[0][0], 16)


def level_files(url: str, level: int = 0) -> list[LTXFileInfo]:
    replica = Replica.open(url)
    try:
        return replica.list_level(level)
    finally:
        replica.close()


def read_file(url: str, info: LTXFileInfo) -> tuple[Header, dict[int, bytes]]:
    """Decode a whole file of the replica (index, trailer and checksum checked): header, pages."""
    replica = Replica.open(url)
    try:
        dec = Decoder(io.BytesIO(replica.store.get(info.key)), info.key)
        pages = dict(dec.pages())
        assert dec.verified
        return dec.header, pages
    finally:
        replica.close()


def replay(conn: apsw.Connection, steps: Sequence[Step]) -> None:
    for step in steps:
        step.apply(conn)


def plain_run(path: Path, steps: Sequence[Step], page_size: int = 4096) -> dict[str, list[tuple[Any, ...]]]:
    """Run `steps` on a plain local SQLite file; return its rows."""
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA page_size = {page_size}")
    replay(conn, steps)
    rows = dump_rows(conn)
    conn.close()
    return rows


def dump_file(path: Path, tables: Sequence[str] = TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of a local database file, after an integrity check."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return dump_rows(conn, tables)
    finally:
        conn.close()


def ltxctl(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `ltxctl ARGS`; fail with its output unless it exits 0."""
    cmd = [str(LTXCTL), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(env) if env else None, timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


_LITESTREAM_VFS_CHILD = """
import json, sys
import apsw, litestream_vfs
loader = apsw.Connection(":memory:")
loader.enable_load_extension(True)
loader.load_extension(litestream_vfs.loadable_path(), "sqlite3_litestreamvfs_init")
conn = apsw.Connection("file:peer.db", vfs="litestream", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
out = [[list(r) for r in conn.execute(q)] for q in json.loads(sys.argv[1])]
print(json.dumps(out))
"""


def litestream_vfs_query(url: str, queries: Sequence[str], cwd: Path,
                         env: Mapping[str, str] | None = None) -> list[list[list[Any]]]:
    """Run `queries` through the real litestream-vfs extension (in a child: it reads
    LITESTREAM_REPLICA_URL once, at load) on replica `url`; rows as JSON lists."""
    child_env = {k: v for k, v in (env or os.environ).items() if k != "AWS_CA_BUNDLE"}
    child_env["LITESTREAM_REPLICA_URL"] = url
    child_env["LITESTREAM_LOG_FILE"] = str(cwd / "litestream-vfs.log")
    done = subprocess.run([sys.executable, "-c", _LITESTREAM_VFS_CHILD, json.dumps(list(queries))],
                          capture_output=True, text=True, env=child_env, cwd=cwd, timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, f"litestream-vfs child failed:\n{done.stdout}\n{done.stderr}"
    result: list[list[list[Any]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def as_json_rows(rows: list[list[tuple[Any, ...]]]) -> list[list[list[Any]]]:
    """Query results in the shape JSON gives them back (bytes as latin-1 text do not occur)."""
    return json.loads(json.dumps([[list(r) for r in q] for q in rows]))
