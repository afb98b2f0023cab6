"""Hydration refuses a file whose header's commit disagrees with page 1's database size (a
well-formed, checksummed file claiming 0x7FFFFFFF pages of a 2-page database), on each path: the
fresh start composing the snapshot with the files after it, and catching up file by file. No
sparse terabyte file is made, and nothing of the file is applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from hydrator.errors import CorruptFileError
from hydrator.hydrator import SNAPSHOT_TMP_SUFFIX, Hydrator
from ltx.header import Header
from ltx.replica import Replica
from tests.ltx.ltxfiles import encode, lying_commit_replica, two_page_database

HUGE = 0x7FFFFFFF


@pytest.mark.parametrize("with_page1", [True, False])
def test_a_fresh_hydration_refuses_it(tmp_path: Path, file_url: str, with_page1: bool) -> None:
    replica = Replica.open(file_url)
    key = lying_commit_replica(replica, two_page_database(tmp_path / "src.db"), HUGE, with_page1=with_page1)
    out = tmp_path / "h.db"
    with Hydrator(replica, out) as hydrator, pytest.raises(CorruptFileError) as caught:
        hydrator.run()
    assert caught.value.key == key and "its page 1 says 2" in str(caught.value)
    assert not out.exists() and not Path(f"{out}{SNAPSHOT_TMP_SUFFIX}").exists()


@pytest.mark.parametrize("with_page1", [True, False])
def test_catching_up_refuses_it_and_keeps_the_local_file(tmp_path: Path, file_url: str, with_page1: bool) -> None:
    pages = two_page_database(tmp_path / "src.db")
    replica = Replica.open(file_url)
    first = Header(page_size=len(pages[0]), commit=2, min_txid=1, max_txid=1, timestamp=1000)
    replica.put_file(0, 1, 1, encode(first, dict(enumerate(pages, 1))), timestamp_ms=1000)
    out = tmp_path / "h.db"
    with Hydrator(replica, out) as hydrator:
        hydrator.run()
    assert out.read_bytes() == b"".join(pages)
    replica.store.delete(replica.key(0, 1, 1))  # lying_commit_replica writes TXID 1 again
    key = lying_commit_replica(replica, pages, HUGE, with_page1=with_page1)
    with Hydrator(replica, out) as hydrator, pytest.raises(CorruptFileError) as caught:
        hydrator.run()
    assert caught.value.key == key and f"{HUGE} pages" in str(caught.value)
    assert out.stat().st_size == 2 * len(pages[0]) and out.read_bytes() == b"".join(pages)
