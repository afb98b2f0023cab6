"""ltx.pageslots: a batch of pages in one buffer, patched in place and written by runs."""

from __future__ import annotations

import os
import random
from array import array
from pathlib import Path

import pytest

from ltx import pageslots
from ltx.pageslots import PageSlots

PAGE_SIZE = 1024
STRIDE = PAGE_SIZE + 10


def make_slots(pgnos: list[int], seed: int = 1) -> tuple[PageSlots, dict[int, bytes]]:
    rng = random.Random(seed)
    pages = {p: rng.randbytes(PAGE_SIZE) for p in pgnos}
    buf = bytearray()
    for p in pgnos:
        buf += rng.randbytes(STRIDE - PAGE_SIZE) + pages[p]  # a prefix the writes must skip
    return PageSlots(array("Q", pgnos), buf, PAGE_SIZE, STRIDE), pages


def written(path: Path, pages: dict[int, bytes]) -> dict[int, bytes]:
    data = path.read_bytes()
    return {p: data[(p - 1) * PAGE_SIZE:p * PAGE_SIZE] for p in pages}


@pytest.mark.parametrize("loop", ["c", "python"])
def test_pages_land_at_their_offsets(loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if loop == "python":
        monkeypatch.setattr(pageslots, "_frames", None)
    else:
        assert pageslots._frames is not None
    pgnos = [1, 2, 3, 7, 9, 10] + list(range(20, 20 + 1100))  # gaps, and a run over 512 iovecs
    slots, pages = make_slots(pgnos)
    fd = os.open(tmp_path / "db", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        slots.write_to(fd)
    finally:
        os.close(fd)
    assert written(tmp_path / "db", pages) == pages
    data = (tmp_path / "db").read_bytes()
    assert data[3 * PAGE_SIZE:6 * PAGE_SIZE] == bytes(3 * PAGE_SIZE)  # pages 4-6 never written


def test_replace_patches_one_page() -> None:
    slots, pages = make_slots([4, 5, 6])
    new = bytes([7]) * PAGE_SIZE
    slots.replace(1, new)
    assert bytes(slots.page(1)) == new
    assert [bytes(p) for p in slots.pages()] == [pages[4], new, pages[6]]
    with pytest.raises(ValueError):
        slots.replace(0, b"short")


def test_write_errors_are_raised(tmp_path: Path) -> None:
    slots, _ = make_slots([1, 2])
    read_only = os.open(tmp_path / "ro", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError):
            slots.write_to(read_only)
    finally:
        os.close(read_only)
    bad, _ = make_slots([1, 2, 3])
    bad.pgnos[2] = 0  # a page number 0 after two good pages: nothing at all is written
    fd = os.open(tmp_path / "db", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with pytest.raises(ValueError):
            bad.write_to(fd)
        assert os.fstat(fd).st_size == 0
        with pytest.raises(ValueError):  # fewer bytes than the slots claim
            PageSlots(array("Q", [1, 2]), bytearray(STRIDE), PAGE_SIZE, STRIDE).write_to(fd)
    finally:
        os.close(fd)
