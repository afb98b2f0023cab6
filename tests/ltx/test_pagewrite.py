"""ltx.pagewrite: pages written at their offsets, a pwritev per run."""

from __future__ import annotations

import os
import random
from array import array
from pathlib import Path

import pytest

from ltx import pagewrite

PAGE_SIZE = 4096


def seeded_pages(count: int, seed: int = 6) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(PAGE_SIZE // 2) + bytes([pgno % 251]) * (PAGE_SIZE // 2) for pgno in range(count)]


def test_page_runs_split_at_gaps_and_at_the_pwritev_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagewrite, "WRITE_BATCH_PAGES", 4)
    pgnos = array("Q", [1, 2, 3, 4, 5, 6, 9, 10, 12, 20, 21, 22, 23])
    assert pagewrite.page_runs(pgnos) == [(0, 4), (4, 6), (6, 8), (8, 9), (9, 13)]
    assert pagewrite.page_runs([7]) == [(0, 1)]
    assert pagewrite.page_runs(array("Q")) == []


def test_write_pages_puts_each_page_at_its_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagewrite, "WRITE_BATCH_PAGES", 3)
    pgnos = array("Q", [2, 3, 4, 5, 8, 9, 11])
    pages = seeded_pages(len(pgnos), seed=9)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        pagewrite.write_pages(fd, PAGE_SIZE, pgnos, pages)
        for pgno, page in zip(pgnos, pages, strict=True):
            assert os.pread(fd, PAGE_SIZE, (pgno - 1) * PAGE_SIZE) == page
        assert os.pread(fd, PAGE_SIZE, 0) == bytes(PAGE_SIZE)  # a hole stays zeros
        assert os.fstat(fd).st_size == 11 * PAGE_SIZE
    finally:
        os.close(fd)
