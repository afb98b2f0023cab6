"""A header's commit against the database size page 1 records (ltx.dbheader): the rule, and a
replica whose newest file claims 0x7FFFFFFF pages while page 1 says 2 (verify reports it, restore
refuses it unless --force)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ltx.cli import main
from ltx.dbheader import CommitSizeError, check_commit, header_db_size
from ltx.replica import Replica
from ltx.restore import restore
from ltx.verify import verify
from tests.ltx.ltxfiles import lying_commit_replica, two_page_database

HUGE = 0x7FFFFFFF


def test_page1_size_is_trusted_by_sqlites_rule(tmp_path: Path) -> None:
    page1 = bytearray(two_page_database(tmp_path / "db")[0])
    assert header_db_size(page1) == 2
    check_commit("f.ltx", 2, page1)
    with pytest.raises(CommitSizeError) as caught:
        check_commit("f.ltx", HUGE, page1, "advice")
    assert (caught.value.name, caught.value.commit, caught.value.db_size) == ("f.ltx", HUGE, 2)
    assert str(caught.value) == (f"f.ltx at offset 12: the header's commit says the database has {HUGE} pages, "
                                 f"its page 1 says 2 (advice)")
    stale = bytearray(page1)
    struct.pack_into(">I", stale, 92, struct.unpack_from(">I", page1, 24)[0] + 1)  # version-valid-for differs
    assert header_db_size(stale) is None
    check_commit("f.ltx", HUGE, stale)  # SQLite would not trust that size: nothing to compare
    zero = bytearray(page1)
    zero[28:32] = bytes(4)
    assert header_db_size(zero) is None
    assert header_db_size(page1[:99]) is None and header_db_size(None) is None


@pytest.fixture
def lying(tmp_path: Path, file_url: str) -> tuple[Replica, str]:
    replica = Replica.open(file_url)
    key = lying_commit_replica(replica, two_page_database(tmp_path / "src.db"), HUGE)
    return replica, key


def test_verify_reports_a_commit_beyond_page1(lying: tuple[Replica, str], capsys: pytest.CaptureFixture[str]) -> None:
    replica, key = lying
    problems = verify(replica)
    assert [(p.key, "its page 1 says 2" in p.message) for p in problems] == [(key, True)]
    assert main(["verify", replica.url]) == 1
    out = capsys.readouterr()
    assert key in out.out and f"{HUGE} pages" in out.out


def test_restore_refuses_it_unless_forced(lying: tuple[Replica, str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    replica, key = lying
    out = tmp_path / "out.db"
    with pytest.raises(CommitSizeError) as caught:
        restore(replica, out)
    assert caught.value.name == key
    assert not out.exists() and not Path(f"{out}.tmp").exists()
    assert main(["restore", replica.url, "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and key in err[0] and "--force" in err[0], err
    assert not out.exists()


def test_forced_restore_cuts_to_the_commit(tmp_path: Path, file_url: str) -> None:
    replica = Replica.open(file_url)
    lying_commit_replica(replica, two_page_database(tmp_path / "src.db"), 5)
    result = restore(replica, tmp_path / "out.db", force=True)
    assert result.commit == 5 and (tmp_path / "out.db").stat().st_size == 5 * 4096


def test_a_file_without_page1_is_checked_against_the_page1_before_it(tmp_path: Path, file_url: str) -> None:
    replica = Replica.open(file_url)
    key = lying_commit_replica(replica, two_page_database(tmp_path / "src.db"), HUGE, with_page1=False)
    with pytest.raises(CommitSizeError) as caught:
        restore(replica, tmp_path / "out.db")
    assert caught.value.name == key
