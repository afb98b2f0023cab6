"""vfs.shipbarrier: registered barriers run before a writer creates a commit's LTX file (at a
`sync=commit` COMMIT and at every group-commit ship), and a failing barrier fails the ship."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from tests.vfs.writing import level_files, open_writer
from vfs import shipbarrier


class Recorder:
    """A barrier noting the level-0 files that existed each time it ran."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[int] = []
        self.fail = False

    def __call__(self) -> None:
        self.seen.append(len(level_files(self.url)))
        if self.fail:
            raise OSError(5, "Input/output error")


@pytest.fixture
def recorder(file_url: str) -> Iterator[Recorder]:
    rec = Recorder(file_url)
    shipbarrier.add(rec)
    try:
        yield rec
    finally:
        shipbarrier.remove(rec)


def test_barrier_runs_before_each_commit_file(file_url: str, tmp_path: Path, recorder: Recorder) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, sync="commit")
    conn.execute("CREATE TABLE t(n)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert recorder.seen == [0, 1], "once per commit, each time before its file existed"
    assert len(level_files(file_url)) == 2


def test_barrier_runs_before_a_group_ships(file_url: str, tmp_path: Path, recorder: Recorder) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, sync="interval:1h")
    conn.execute("CREATE TABLE t(n)")
    for i in range(20):
        conn.execute("INSERT INTO t VALUES (?)", (i,))
    assert recorder.seen == [], "nothing ships within the interval"
    conn.execute("PRAGMA ltxvfs_flush").fetchall()
    assert recorder.seen == [0], "one barrier for the one file of the group, before it existed"
    conn.close()
    assert len(level_files(file_url)) == 1


def test_a_failing_barrier_fails_the_commit(file_url: str, tmp_path: Path, recorder: Recorder) -> None:
    conn = open_writer(tmp_path / "x.db", file_url, sync="commit")
    conn.execute("CREATE TABLE t(n)")
    recorder.fail = True
    with pytest.raises(apsw.Error):
        conn.execute("INSERT INTO t VALUES (1)")
    assert len(level_files(file_url)) == 1, "the refused commit was not shipped"
    recorder.fail = False
    conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT n FROM t").fetchall() == [(2,)]
    conn.close()
    assert len(level_files(file_url)) == 2
