"""Differential property: random databases, shipped as a snapshot and incremental commits, answer
random queries through ltxvfs exactly as plain SQLite answers them on the source file."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import apsw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltx.replica import Replica
from tests.vfs.replicas import History, connect

values = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
                   st.text(max_size=60), st.binary(max_size=3000))
rows = st.lists(st.tuples(st.integers(0, 5000), values, values), max_size=120)
commits = st.lists(st.tuples(rows, st.lists(st.integers(0, 5000), max_size=20)), min_size=1, max_size=4)


@st.composite
def queries(draw: st.DrawFn) -> str:
    lo = draw(st.integers(-10, 5000))
    hi = draw(st.integers(lo, 5010))
    order = draw(st.sampled_from(["id", "id DESC", "typeof(a), a, id", "b, id", "length(b) DESC, id"]))
    limit = draw(st.sampled_from(["", " LIMIT 7", " LIMIT 3 OFFSET 2"]))
    shape = draw(st.sampled_from([
        f"SELECT * FROM t WHERE id BETWEEN {lo} AND {hi} ORDER BY {order}{limit}",
        f"SELECT count(*), sum(length(b)), max(id) FROM t WHERE id >= {lo}",
        "SELECT a, count(*) FROM t GROUP BY a ORDER BY count(*) DESC, typeof(a), a LIMIT 5",
        f"SELECT id FROM t WHERE a IS NOT NULL ORDER BY a, id{limit}",
        f"SELECT id, hex(b) FROM t WHERE id = {lo}",
    ]))
    return shape


def _records(conn: apsw.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page_size=st.sampled_from([512, 1024, 4096]), history=commits, asked=st.lists(queries(), min_size=1,
                                                                                       max_size=6))
def test_random_databases_answer_like_sqlite(page_size: int, history: list[tuple[list[tuple[int, Any, Any]],
                                                                                  list[int]]],
                                             asked: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "source.db"
        conn = apsw.Connection(str(source))
        conn.execute(f"PRAGMA page_size = {page_size}").fetchall()
        conn.execute("PRAGMA journal_mode = delete").fetchall()
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, a, b); CREATE INDEX t_a ON t(a)")
        images = [b"", source.read_bytes()]
        for inserts, deletes in history:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO t VALUES (?, ?, ?)", inserts)
                conn.executemany("DELETE FROM t WHERE id = ?", [(d,) for d in deletes])
            images.append(source.read_bytes())
        url = f"file://{work / 'replica'}"
        replica = Replica.open(url)
        History(page_size, images).ship(replica)
        replica.close()
        through = connect(work / "x.db", url, poll=0)
        try:
            for sql in asked:
                assert _records(through, sql) == _records(conn, sql), sql
        finally:
            through.close()
            conn.close()
