"""Bad input: empty replicas, gaps, corrupt frames, reads past the end, bad URI parameters."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import apsw
import pytest

from ltx.reader import read_file_index
from ltx.replica import Replica
from tests.vfs.replicas import History, connect, plain, run_queries, uri
from vfs import opening
from vfs.errors import PageCorruptError, ReplicaOpenError
from vfs.opening import open_file
from vfs.options import DEFAULT_OPEN_WAIT, OpenOptions
from vfs.vfs import VFS_NAME


def test_empty_replica_fails_after_a_bounded_wait(file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    url, _ = file_replica
    started = time.monotonic()
    with pytest.raises(ReplicaOpenError, match="no LTX files") as info:
        connect(tmp_path / "x.db", url, wait="300ms")
    assert info.value.url == url
    assert "waited 0.3s" in str(info.value)
    assert time.monotonic() - started >= 0.3


def test_a_missing_replica_fails_at_once_by_default(file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    # No wait= given: an empty listing is the answer (no writer is expected), not a 5 s wait.
    url, _ = file_replica
    started = time.monotonic()
    with pytest.raises(ReplicaOpenError, match="no LTX files") as info:
        connect(tmp_path / "x.db", url)
    assert "waited" not in str(info.value)
    assert time.monotonic() - started < DEFAULT_OPEN_WAIT / 2


def test_wait_waits_for_a_writers_first_commit(history_factory: Callable[..., History],
                                               file_replica: tuple[str, Replica], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # wait= asks for the first commit of a writer that is starting: the open retries the empty
    # listing, and the writer's commit (made here during the first pause) is what it opens.
    history = history_factory(seed=33, transactions=2)
    url, replica = file_replica
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        if not pauses:
            history.ship(replica, 1, 2)
        pauses.append(seconds)

    monkeypatch.setattr(opening, "time", SimpleNamespace(monotonic=time.monotonic, sleep=pause))
    conn = connect(tmp_path / "x.db", url, wait="30s", poll=0)
    try:
        assert len(pauses) == 1
        assert conn.execute("PRAGMA litestream_txid").fetchall()[0][0] == f"{2:016x}"
    finally:
        conn.close()


def test_gap_in_history_names_the_missing_txids(history_factory: Callable[..., History],
                                                file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    history = history_factory(seed=31, page_size=4096, transactions=10)
    url, replica = file_replica
    history.ship(replica, 1, 3)
    history.ship(replica, 6, 7)
    with pytest.raises(ReplicaOpenError, match="gap in the history.*0000000000000004..0000000000000005"):
        connect(tmp_path / "x.db", url, wait=0)
    conn = connect(tmp_path / "x.db", url, txid="3")
    try:
        assert run_queries(conn)[-1] == [("ok",)], "TXIDs before the gap stay readable"
    finally:
        conn.close()


def _damage(replica: Replica, key: str, pgno: int, how: str) -> None:
    """Change one frame of a stored file in place (file:// store: the object is a file)."""
    entry = read_file_index(replica.store, key).index.find(pgno)
    assert entry is not None
    path = Path(replica.url.removeprefix("file://")) / key
    data = bytearray(path.read_bytes())
    if how == "pgno":
        struct.pack_into(">I", data, entry.offset, pgno + 1)
    elif how == "size":
        struct.pack_into(">I", data, entry.offset + 6, entry.size - 10 - 1)
    else:  # an LZ4 block that decodes to the wrong length, or not at all
        data[entry.offset + 10:entry.offset + entry.size] = bytes([0xF0]) * (entry.size - 10)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["pgno", "size", "lz4"])
def test_corrupt_frame_is_an_error_naming_the_object(history_factory: Callable[..., History],
                                                     file_replica: tuple[str, Replica], tmp_path: Path,
                                                     how: str) -> None:
    history = history_factory(seed=32, page_size=4096, transactions=10)
    url, replica = file_replica
    replica.put_file(9, 1, history.last_txid, history.encode(history.last_txid, 1),
                     timestamp_ms=history.timestamp_ms(history.last_txid))
    key = replica.key(9, 1, history.last_txid)
    victim = len(history.pages(history.last_txid)) - 1
    _damage(replica, key, victim, how)
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        with pytest.raises(PageCorruptError) as info:
            f.xRead(4096, (victim - 1) * 4096)
        assert info.value.key == key
        assert key in str(info.value)
        assert f.xRead(4096, 0)[:16] == b"SQLite format 3\x00", "other pages still read"
    finally:
        f.xClose()
    conn = connect(tmp_path / "x.db", url, poll=0)
    try:
        with pytest.raises(apsw.CorruptError):
            conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


def test_reads_past_the_commit_are_short(history_factory: Callable[..., History],
                                         file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    history = history_factory(seed=33, page_size=4096, transactions=6)
    url, replica = file_replica
    history.ship(replica)
    pages = history.pages(history.last_txid)
    f = open_file(OpenOptions(path=str(tmp_path / "x.db"), replica_url=url, poll=0))
    try:
        size = len(pages) * 4096
        assert f.xFileSize() == size
        assert f.xRead(4096, size) == b""
        assert f.xRead(4096, size + 10 * 4096) == b""
        tail = f.xRead(8192, size - 4096)
        assert tail == pages[-1], "a read crossing the end returns only the bytes that exist"
        assert f.xRead(100, size - 50) == pages[-1][-50:]
    finally:
        f.xClose()


@pytest.mark.parametrize(("param", "value", "message"), [
    ("txid", "zz", "hexadecimal"),
    ("txid", "0", "start at 1"),
    ("timestamp", "last tuesday", "RFC 3339"),
    ("cache_size", "lots", "bytes"),
    ("poll", "fast", "duration"),
    ("neighbours", "near", "bytes"),
    ("neighbours", "1m", "at most 256 KiB"),
])
def test_bad_uri_parameters_are_refused(file_replica: tuple[str, Replica], tmp_path: Path, param: str, value: str,
                                        message: str) -> None:
    url, _ = file_replica
    with pytest.raises(apsw.CantOpenError, match=message):
        connect(tmp_path / "x.db", url, **{param: value})


@pytest.mark.parametrize(("param", "hint"), [("cachesize", "cache_size"), ("txdi", "txid"), ("timestamps", "timestamp"),
                                           ("bogus", "")])
def test_unknown_uri_parameters_are_refused(file_replica: tuple[str, Replica], tmp_path: Path, param: str,
                                            hint: str) -> None:
    # A typo must not silently read the latest state (txdi=) or the defaults (cachesize=).
    url, _ = file_replica
    with pytest.raises(apsw.CantOpenError) as info:
        connect(tmp_path / "x.db", url, **{param: "1"})
    message = str(info.value)
    assert f"URI parameter {param}='1': unknown parameter" in message
    assert (f"did you mean {hint}=?" in message) if hint else ("did you mean" not in message)
    assert "replica, txid, timestamp, cache_size" in message and "mode, cache, immutable, vfs" in message


def test_sqlite_uri_parameters_are_accepted(history_factory: Callable[..., History],
                                            file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    history = history_factory(seed=32, transactions=3)
    url, replica = file_replica
    history.ship(replica, 1, 3)
    conn = apsw.Connection(uri(tmp_path / "x.db", url, mode="ro", cache="private", psow="1", nolock="1",
                               immutable="0", vfs=VFS_NAME, poll="0"),
                           flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)  # fmt: skip
    try:
        expected = plain(history.write_image(3, tmp_path / "expected.db"))
        assert run_queries(conn) == run_queries(expected)
        expected.close()
    finally:
        conn.close()


def test_unknown_replica_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplicaOpenError, match="gopher"):
        connect(tmp_path / "x.db", "gopher://nowhere/x")


def test_stray_journal_and_wal_beside_the_name_are_ignored(history_factory: Callable[..., History],
                                                           file_replica: tuple[str, Replica], tmp_path: Path) -> None:
    """A local file named like the database's journal is nobody's transaction: never rolled back."""
    history = history_factory(seed=34, page_size=4096, transactions=6)
    url, replica = file_replica
    history.ship(replica)
    name = tmp_path / "x.db"
    journal = tmp_path / "x.db-journal"
    journal.write_bytes(bytes([0xD9, 0xD5, 0x05, 0xF9, 0x20, 0xA1, 0x63, 0xD7]) + bytes(4088))
    (tmp_path / "x.db-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(28))
    conn = connect(name, url, poll=0)
    try:
        assert run_queries(conn)[-1] == [("ok",)]
    finally:
        conn.close()
    assert journal.stat().st_size == 4096, "the journal was not touched"
