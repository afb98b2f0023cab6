"""hydrator.compose: a snapshot and the files after it, written in one pass, equal applying them in order."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from hydrator import apply
from hydrator.apply import VerifiedFile, verify_to_spill
from hydrator.compose import verify_snapshot_into
from ltx.encoder import Encoder
from ltx.errors import LTXError
from ltx.header import Header
from ltx.pageslots import PageSlots

PAGE_SIZE = 512


def encode(min_txid: int, commit: int, pages: dict[int, bytes]) -> bytes:
    buf = io.BytesIO()
    header = Header(page_size=PAGE_SIZE, commit=commit, min_txid=min_txid, max_txid=min_txid,
                    timestamp=1000 + min_txid)
    enc = Encoder(buf, header)
    for pgno in sorted(pages):
        if pgno != header.lock_pgno:
            enc.write_page(pgno, pages[pgno])
    enc.close()
    return buf.getvalue()


def scenario(seed: int) -> tuple[bytes, list[bytes]]:
    """A snapshot and 1-6 files after it: random page sets, commits that shrink and grow."""
    rng = random.Random(seed)
    commit = rng.randrange(1, 300)
    snap = encode(1, commit, {p: rng.randbytes(PAGE_SIZE) for p in range(1, commit + 1)})
    files = []
    for txid in range(2, rng.randrange(3, 9)):
        commit = max(1, commit + rng.randrange(-120, 120))
        chosen = {rng.randrange(1, commit + 1) for _ in range(rng.randrange(1, 40))}
        if rng.random() < 0.3:  # a growth writes its new pages, as SQLite does
            chosen |= set(range(max(1, commit - 20), commit + 1))
        files.append(encode(txid, commit, {p: rng.randbytes(PAGE_SIZE) for p in chosen}))
    return snap, files


def spills(files: list[bytes]) -> list[VerifiedFile]:
    return [verify_to_spill(io.BytesIO(data), f"f{i}") for i, data in enumerate(files)]


def one_by_one(path: Path, snap: bytes, files: list[bytes]) -> bytes:
    """The reference: the snapshot alone, then each file applied in turn (pages, then the cut)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    verified = spills(files)
    try:
        verify_snapshot_into(io.BytesIO(snap), "snap", fd)
        for vf in verified:
            vf.apply(fd)
    finally:
        os.close(fd)
        for vf in verified:
            vf.close()
    return path.read_bytes()


def composed(path: Path, snap: bytes, files: list[bytes]) -> bytes:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    verified = spills(files)
    try:
        verify_snapshot_into(io.BytesIO(snap), "snap", fd, then=verified)
    finally:
        os.close(fd)
        for vf in verified:
            vf.close()
    return path.read_bytes()


@pytest.mark.parametrize("seed", range(40))
def test_composed_file_equals_files_applied_one_by_one(seed: int, tmp_path: Path) -> None:
    snap, files = scenario(seed)
    assert composed(tmp_path / "c", snap, files) == one_by_one(tmp_path / "r", snap, files)


def test_each_page_is_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    snap = encode(1, 200, {p: rng.randbytes(PAGE_SIZE) for p in range(1, 201)})
    files = [encode(2, 200, {p: rng.randbytes(PAGE_SIZE) for p in (3, 50, 199)}),
             encode(3, 230, {p: rng.randbytes(PAGE_SIZE) for p in (50, 210, 230)})]
    written: list[int] = []
    real = apply.write_pages

    def counting(fd: int, page_size: int, pgnos: object, pages: object) -> None:
        written.extend(pgnos)  # type: ignore[arg-type]
        real(fd, page_size, pgnos, pages)  # type: ignore[arg-type]

    real_slots = PageSlots.write_to

    def counting_slots(slots: PageSlots, fd: int) -> None:
        written.extend(slots.pgnos)
        real_slots(slots, fd)

    monkeypatch.setattr(apply, "write_pages", counting)
    monkeypatch.setattr(PageSlots, "write_to", counting_slots)
    import hydrator.compose as compose
    monkeypatch.setattr(compose, "write_pages", counting)
    data = composed(tmp_path / "c", snap, files)
    assert sorted(written) == list(range(1, 201)) + [210, 230]
    monkeypatch.undo()
    assert data == one_by_one(tmp_path / "r", snap, files)


def test_a_composed_snapshot_is_synced_once_after_its_last_write(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(8)
    snap = encode(1, 100, {p: rng.randbytes(PAGE_SIZE) for p in range(1, 101)})
    files = [encode(2, 120, {p: rng.randbytes(PAGE_SIZE) for p in (7, 110, 120)})]
    events: list[str] = []
    real_fsync, real_write = os.fsync, apply.write_pages

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def write_pages(fd: int, page_size: int, pgnos: object, pages: object) -> None:
        events.append("write")
        real_write(fd, page_size, pgnos, pages)  # type: ignore[arg-type]

    import hydrator.compose as compose
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(apply, "write_pages", write_pages)
    monkeypatch.setattr(compose, "write_pages", write_pages)
    data = composed(tmp_path / "c", snap, files)
    assert events.count("fsync") == 1 and events[-1] == "fsync"
    monkeypatch.undo()
    assert data == one_by_one(tmp_path / "r", snap, files)


def test_a_file_of_another_page_size_is_refused(tmp_path: Path) -> None:
    snap = encode(1, 10, {p: bytes([p]) * PAGE_SIZE for p in range(1, 11)})
    buf = io.BytesIO()
    enc = Encoder(buf, Header(page_size=1024, commit=5, min_txid=2, max_txid=2, timestamp=5))
    enc.write_page(2, bytes(1024))
    enc.close()
    other = verify_to_spill(io.BytesIO(buf.getvalue()), "other.ltx")
    fd = os.open(tmp_path / "c", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with pytest.raises(LTXError, match="other.ltx.*page size 1024"):
            verify_snapshot_into(io.BytesIO(snap), "snap", fd, then=[other])
    finally:
        os.close(fd)
        other.close()
