"""A database name finds its replica: URI replica=, then a registration, then the environment,
then `<name>-ltx/` beside the name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import vfs
from ltx.replica import Replica
from tests.vfs.replicas import History, uri
from vfs.resolve import ENV_REPLICA_URL


def _replica_with_table(url: str, workdir: Path, table: str) -> None:
    """A one-TXID replica whose database holds one table named `table`."""
    path = workdir / f"{table}.src.db"
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode = delete").fetchall()
    conn.execute(f"CREATE TABLE t_{table}(x)")
    conn.close()
    replica = Replica.open(url)
    History(4096, [b"", path.read_bytes()]).ship(replica)
    replica.close()


def _tables(conn: apsw.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[dict[str, str]]:
    urls = {name: f"file://{tmp_path / name}" for name in ("uri", "registered", "env")}
    urls["default"] = f"file://{tmp_path / 'd.db'}-ltx"
    for name, url in urls.items():
        _replica_with_table(url, tmp_path, name)
    yield urls
    vfs.unregister_replica(tmp_path / "d.db")


def _open(path: Path, replica: str | None = None) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    return apsw.Connection(uri(path, replica, poll=0), vfs="ltxvfs", flags=flags)


def test_resolution_order(replicas: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = tmp_path / "d.db"
    monkeypatch.delenv(ENV_REPLICA_URL, raising=False)
    assert _tables(_open(name)) == ["t_default"]
    monkeypatch.setenv(ENV_REPLICA_URL, replicas["env"])
    assert _tables(_open(name)) == ["t_env"]
    vfs.register_replica(name, replicas["registered"])
    assert _tables(_open(name)) == ["t_registered"]
    assert _tables(_open(name, replicas["uri"])) == ["t_uri"]
    vfs.unregister_replica(name)
    assert _tables(_open(name)) == ["t_env"]


def test_relative_names_and_plain_paths(replicas: dict[str, str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_REPLICA_URL, raising=False)
    monkeypatch.chdir(tmp_path)
    vfs.register_replica("d.db", replicas["registered"])
    conn = apsw.Connection("d.db", vfs="ltxvfs", flags=apsw.SQLITE_OPEN_READONLY)
    assert _tables(conn) == ["t_registered"]
    conn.close()
    # A read-write open is a writer: its commit goes to the registered replica, nowhere local.
    conn = apsw.Connection("d.db", vfs="ltxvfs")
    assert _tables(conn) == ["t_registered"]
    conn.execute("CREATE TABLE y(z)")
    conn.close()
    conn = apsw.Connection("d.db", vfs="ltxvfs", flags=apsw.SQLITE_OPEN_READONLY)
    assert _tables(conn) == ["t_registered", "y"]
    conn.close()
    assert not (tmp_path / "d.db").exists(), "no local main database file is created"
    assert not (tmp_path / "d.db-journal").exists(), "nor a journal beside it"
    # The shared helper percent-encodes replica URLs that have queries of their own.
    encoded = uri(tmp_path / "d.db", "s3://b/p?endpoint=http://h:1&region=x")
    assert "replica=s3%3A%2F%2Fb%2Fp%3Fendpoint%3Dhttp%3A%2F%2Fh%3A1%26region%3Dx" in encoded
