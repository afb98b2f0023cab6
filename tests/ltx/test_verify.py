"""ltx.verify: clean replicas pass; every corruption of a test set is found and named."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from ltx.compaction import compact_level, snapshot
from ltx.hint import HINT_KEY, refresh_hint
from ltx.pagesums import PageSums
from ltx.plan import LTXFileInfo
from ltx.replica import Replica
from ltx.verify import Verifier, verify
from tests.ltx.history import History, record_history


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return record_history(tmp_path_factory.mktemp("h"), seed=44, transactions=18)


def build(history: History, url: str) -> Replica:
    """Levels 0, 1, 2 and 9, each with several files."""
    replica = Replica.open(url)
    history.ship(replica, 1, 6)
    compact_level(replica, 1)
    history.ship(replica, 7, 10)
    compact_level(replica, 1)
    compact_level(replica, 2)
    snapshot(replica)
    history.ship(replica, 11, history.last_txid)
    compact_level(replica, 1)
    return replica


def test_clean_replica_passes(history: History, store_url: str) -> None:
    replica = build(history, store_url)
    verifier = Verifier(replica, parallelism=4)
    assert list(verifier.problems()) == []
    levels = replica.list_levels()
    assert verifier.stats.files == sum(len(v) for v in levels.values()) > history.last_txid
    assert {lvl for lvl, n in verifier.stats.levels.items() if n} == {0, 1, 2, 9}


def _flip(offset: Callable[[int], int]) -> Callable[[Replica, LTXFileInfo], None]:
    def corrupt(replica: Replica, f: LTXFileInfo) -> None:
        data = bytearray(replica.store.get(f.key))
        data[offset(len(data))] ^= 0x10
        replica.store.put(f.key, bytes(data))
    return corrupt


def _truncate(replica: Replica, f: LTXFileInfo) -> None:
    replica.store.put(f.key, replica.store.get(f.key)[: f.size * 2 // 3])


def _delete(replica: Replica, f: LTXFileInfo) -> None:
    replica.store.delete(f.key)


def _append(replica: Replica, f: LTXFileInfo) -> None:
    replica.store.put(f.key, replica.store.get(f.key) + b"\0" * 7)


CORRUPTIONS: dict[str, Callable[[Replica, LTXFileInfo], None]] = {
    "flip-header": _flip(lambda n: 30),          # max TXID field
    "flip-page-data": _flip(lambda n: 100 + 12),  # inside the first LZ4 block
    "flip-middle": _flip(lambda n: n // 2),
    "flip-index": _flip(lambda n: n - 16 - 8 - 2),
    "flip-trailer": _flip(lambda n: n - 1),
    "truncate": _truncate,
    "trailing-bytes": _append,
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_corruption_is_found(history: History, tmp_path: Path, kind: str) -> None:
    replica = build(history, f"file://{tmp_path / 'r'}")
    level = (0, 1, 2, 9)[sorted(CORRUPTIONS).index(kind) % 4]
    files = replica.list_level(level)
    victim = random.Random(f"{kind}{level}").choice(files)
    CORRUPTIONS[kind](replica, victim)
    problems = verify(replica)
    assert problems, f"{kind} of {victim.key} went unnoticed"
    assert any(p.key == victim.key for p in problems), [str(p) for p in problems]
    assert all(str(p).startswith(replica.url) for p in problems)


def test_missing_file_is_a_gap(history: History, store_url: str) -> None:
    replica = build(history, store_url)
    victim = replica.list_level(0)[8]
    _delete(replica, victim)
    problems = verify(replica)
    gap = [p for p in problems if "gap in level 0" in p.message]
    assert gap and f"{victim.min_txid:016x}..{victim.max_txid:016x}" in gap[0].message
    # The level-1 file covering it keeps the restore plan whole: only the level's hole is reported.
    assert not [p for p in problems if "restore plan" in p.message]


def test_missing_file_breaking_the_plan(history: History, tmp_path: Path) -> None:
    replica = Replica.open(f"file://{tmp_path / 'r'}")
    history.ship(replica, 1, 8)
    _delete(replica, replica.list_level(0)[4])
    messages = [p.message for p in verify(replica)]
    assert any("no restore plan" in m and f"{5:016x}" in m for m in messages), messages


def test_file_swapped_between_levels(history: History, tmp_path: Path) -> None:
    replica = build(history, f"file://{tmp_path / 'r'}")
    a = replica.list_level(1)[0]
    b = replica.list_level(2)[0]
    data_a, data_b = replica.store.get(a.key), replica.store.get(b.key)
    replica.store.put(a.key, data_b)
    replica.store.put(b.key, data_a)
    problems = verify(replica)
    named = {p.key for p in problems}
    assert {a.key, b.key} <= named, [str(p) for p in problems]


def test_file_moved_to_another_level(history: History, tmp_path: Path) -> None:
    """An incremental put where snapshots live, and a level-1 file moved into level 2's range."""
    replica = build(history, f"file://{tmp_path / 'r'}")
    l0 = replica.list_level(0)[5]
    moved = replica.key(9, l0.min_txid, l0.max_txid)
    replica.store.put(moved, replica.store.get(l0.key))
    l1 = replica.list_level(1)[1]
    into2 = replica.key(2, l1.min_txid, l1.max_txid)
    replica.store.put(into2, replica.store.get(l1.key))
    problems = verify(replica)
    named = {p.key for p in problems}
    assert moved in named and into2 in named, [str(p) for p in problems]


def test_disagreeing_database_size(history: History, tmp_path: Path) -> None:
    """A level-1 file rebuilt with a wrong commit is a valid file on its own; its disagreement
    with level 0 about the database size at its max TXID is what gives it away."""
    from ltx.encoder import Encoder
    from ltx.header import Header

    replica = Replica.open(f"file://{tmp_path / 'r'}")
    history.ship(replica, 1, 5)
    pages = history.pages(5)
    hdr = Header(page_size=history.page_size, commit=len(pages) + 1, min_txid=1, max_txid=5,
                 timestamp=history.timestamp_ms(5))
    key = replica.key(1, 1, 5)
    path = tmp_path / "fake.ltx"
    with path.open("wb") as out:
        enc = Encoder(out, hdr)
        for i, page in enumerate([*pages, bytes(history.page_size)], start=1):
            enc.write_page(i, page)
        enc.close()
    replica.store.put(key, path.read_bytes())
    problems = verify(replica)
    assert any(p.key == key and "database size" in p.message for p in problems), [str(p) for p in problems]


def _sidecar_damage(how: str) -> Callable[[Replica, LTXFileInfo, PageSums], bytes]:
    """Ways a sidecar goes wrong: its own bytes flipped, one page's checksum wrong (a well-formed
    sidecar), or one describing another file of the same name (stale)."""
    def damage(replica: Replica, f: LTXFileInfo, sums: PageSums) -> bytes:
        if how == "flipped":
            data = bytearray(sums.encode())
            data[len(data) // 2] ^= 0x01
            return bytes(data)
        if how == "page":
            sums.sums[len(sums) // 2] ^= 0x01
            return sums.encode()
        if how == "stale-spans":  # spans of another file: what a reader of the spans checks
            sums.timestamp += 1
            return sums.encode()
        if how == "spans":  # a span's check value wrong (a well-formed sidecar)
            assert sums.spans is not None
            sums.spans.checks[len(sums.spans) // 2] ^= 0x01
            return sums.encode()
        sums.file_checksum ^= 0x01
        return sums.encode()
    return damage


@pytest.mark.parametrize("how, says", [("flipped", "page checksum file"), ("page", "pages differ from page checksum"),
                                       ("stale", "describes another file"),
                                       ("stale-spans", "describes another file"),
                                       ("spans", "spans of page checksum file")])
def test_a_wrong_sidecar_is_reported(history: History, file_url: str, how: str, says: str) -> None:
    replica = build(history, file_url)
    assert verify(replica) == []
    with_sums = [f for files in replica.list_levels().values() for f in files if f.sums_key]
    assert with_sums, "compaction should have written a sidecar beside a large file"
    f = with_sums[0]
    assert f.sums_key is not None
    sums = PageSums.decode(replica.store.get(f.sums_key), f.sums_key)
    replica.store.put(f.sums_key, _sidecar_damage(how)(replica, f, sums))
    problems = verify(replica)
    assert [p.key for p in problems] == [f.key], problems
    assert says in problems[0].message and f.sums_key in problems[0].message


def test_a_damaged_hint_is_reported_and_compact_rewrites_it(history: History, file_url: str) -> None:
    replica = build(history, file_url)
    assert refresh_hint(replica).header is not None
    assert verify(replica) == []
    good = replica.store.get(HINT_KEY)
    replica.store.put(HINT_KEY, good[:len(good) // 2])
    problems = verify(replica)
    assert [p.key for p in problems] == [HINT_KEY] and "damaged hint" in problems[0].message, problems
    assert refresh_hint(replica).how == "full"
    assert verify(replica) == []
