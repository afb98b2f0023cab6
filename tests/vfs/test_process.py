"""The process-wide registries (vfs/process.py): what a connection adds to them while open, and
that closing it leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import vfs
from tests.vfs.writing import open_writer
from vfs import process


def test_a_writer_joins_the_registries_and_leaves_them(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/replica"
    before = process.sizes()
    conn = open_writer(tmp_path / "x.db", url, sync="interval:10ms", compact="auto")
    conn.execute("CREATE TABLE t(x)")
    during = process.sizes()
    assert during["peers"] == before["peers"] + 1
    assert during["group_writers"] == before["group_writers"] + 1
    assert during["compactors"] == before["compactors"] + 1
    conn.close()
    after = process.sizes()
    assert {k: after[k] for k in ("peers", "group_writers", "compactors")} == \
        {k: before[k] for k in ("peers", "group_writers", "compactors")}


def test_replica_names_live_in_the_process_registry(tmp_path: Path) -> None:
    name = tmp_path / "named.db"
    vfs.register_replica(name, "file:///somewhere")
    try:
        assert process.REPLICA_NAMES.entries[str(name)] == "file:///somewhere"
    finally:
        vfs.unregister_replica(name)
    assert str(name) not in process.REPLICA_NAMES.entries
