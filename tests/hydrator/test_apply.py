"""hydrator.apply: a snapshot decoded into a preallocated file, writeback started without waiting."""

from __future__ import annotations

import ctypes
import errno
import io
import mmap
import os
import random
import sys
from pathlib import Path

import pytest

from hydrator import apply
from hydrator.apply import preallocate, start_writeback
from hydrator.compose import verify_snapshot_into
from ltx import decoder
from ltx.encoder import Encoder
from ltx.errors import LTXError
from ltx.header import Header

PAGE_SIZE = 4096


def snapshot_bytes(pages: list[bytes]) -> bytes:
    buf = io.BytesIO()
    enc = Encoder(buf, Header(page_size=PAGE_SIZE, commit=len(pages), min_txid=1, max_txid=1, timestamp=1000))
    for pgno, page in enumerate(pages, start=1):
        enc.write_page(pgno, page)
    enc.close()
    return buf.getvalue()


def seeded_pages(count: int, seed: int = 6) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(PAGE_SIZE // 2) + bytes([pgno % 251]) * (PAGE_SIZE // 2) for pgno in range(count)]


def test_snapshot_is_written_whole_with_writeback_started_on_the_way(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pages = seeded_pages(300)
    started: list[int] = []
    real = apply.start_writeback

    def counting(fd: int, offset: int = 0, length: int = 0) -> None:
        started.append(fd)
        real(fd, offset, length)

    monkeypatch.setattr(apply, "start_writeback", counting)
    monkeypatch.setattr(apply, "FLUSH_EVERY", 64 * PAGE_SIZE)
    path = tmp_path / "db"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        header = verify_snapshot_into(io.BytesIO(snapshot_bytes(pages)), "snap.ltx", fd)
    finally:
        os.close(fd)
    assert header.commit == 300
    assert path.read_bytes() == b"".join(pages)
    assert started, "no writeback was started while 300 pages were written"


def test_a_corrupt_snapshot_fails_after_preallocation(tmp_path: Path) -> None:
    data = bytearray(snapshot_bytes(seeded_pages(40)))
    data[-3] ^= 0xFF  # the file checksum
    fd = os.open(tmp_path / "db", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with pytest.raises(LTXError, match="snap.ltx"):
            verify_snapshot_into(io.BytesIO(bytes(data)), "snap.ltx", fd)
    finally:
        os.close(fd)


def test_start_writeback_keeps_the_data_and_needs_no_wait_on_linux(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform.startswith("linux"):
        assert apply._sync_file_range is not None
    synced: list[int] = []
    monkeypatch.setattr(os, "fdatasync", synced.append)
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * 10_000, 0)
        start_writeback(fd)
        assert os.pread(fd, 10_000, 0) == b"x" * 10_000
        assert synced == ([] if apply._sync_file_range is not None else [fd])
        monkeypatch.setattr(apply, "_sync_file_range", None)  # elsewhere: fdatasync
        start_writeback(fd)
        assert synced[-1] == fd
    finally:
        os.close(fd)


def test_preallocate_sizes_the_file_with_zeros(tmp_path: Path) -> None:
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        preallocate(fd, 5 * PAGE_SIZE)
        assert os.fstat(fd).st_size == 5 * PAGE_SIZE
        assert os.pread(fd, 5 * PAGE_SIZE, 0) == bytes(5 * PAGE_SIZE)
    finally:
        os.close(fd)


def test_preallocate_skips_an_unsupporting_file_system_but_not_a_full_disk(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(code: int):  # type: ignore[no-untyped-def]
        def fallocate(fd: int, offset: int, length: int) -> None:
            raise OSError(code, os.strerror(code))
        return fallocate

    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        monkeypatch.setattr(os, "posix_fallocate", refuse(errno.EOPNOTSUPP), raising=False)
        preallocate(fd, PAGE_SIZE)
        assert os.fstat(fd).st_size == 0
        monkeypatch.setattr(os, "posix_fallocate", refuse(errno.ENOSPC))
        with pytest.raises(OSError) as info:
            preallocate(fd, PAGE_SIZE)
        assert info.value.errno == errno.ENOSPC
    finally:
        os.close(fd)



def resident_pages(fd: int, size: int) -> list[bool]:
    """Which of the file's memory pages are in the page cache (Linux mincore on a mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    try:
        vec = ctypes.create_string_buffer((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE)
        assert libc.mincore(ctypes.c_void_p(addr), size, vec) == 0, os.strerror(ctypes.get_errno())
        return [bool(b & 1) for b in vec.raw]
    finally:
        libc.munmap(ctypes.c_void_p(addr), size)


#: Pages per decoder batch at most in the drop-behind tests (a batch also ends with a read) ...
BATCH_PAGES = 64
#: ... and the writeback range size (each batch flushes one range).
RANGE_PAGES = 32


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small decoder batches and writeback ranges (small files go through many ranges)."""
    monkeypatch.setattr(decoder, "BATCH_BYTES", BATCH_PAGES * PAGE_SIZE)
    monkeypatch.setattr(apply, "FLUSH_EVERY", RANGE_PAGES * PAGE_SIZE)
    monkeypatch.setattr(apply, "WRITE_GROUP_BYTES", 1)  # each batch handed over alone
    monkeypatch.setattr(apply, "DROP_BEHIND", True)  # off by default; these tests are about it


@pytest.mark.skipif(not apply.can_drop_behind(), reason="drop-behind needs Linux sync_file_range")
@pytest.mark.usefixtures("small_ranges")
def test_a_snapshot_is_dropped_from_the_page_cache_behind_the_writes(tmp_path: Path) -> None:
    pages = seeded_pages(BATCH_PAGES * (apply.WRITEBACK_RANGES + 4))
    path = tmp_path / "db"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        verify_snapshot_into(io.BytesIO(snapshot_bytes(pages)), "snap.ltx", fd)
        resident = resident_pages(fd, len(pages) * PAGE_SIZE)
    finally:
        os.close(fd)
    # The first ranges flushed (WRITEBACK_RANGES before the last) were written back, then dropped.
    assert not any(resident[:RANGE_PAGES * PAGE_SIZE // mmap.PAGESIZE])
    assert path.read_bytes() == b"".join(pages)


def test_a_snapshot_keeps_its_pages_cached_without_drop_behind(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pages = seeded_pages(300)
    monkeypatch.setattr(apply, "FLUSH_EVERY", 64 * PAGE_SIZE)
    monkeypatch.setattr(apply, "DROP_BEHIND", False)
    path = tmp_path / "db"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        verify_snapshot_into(io.BytesIO(snapshot_bytes(pages)), "snap.ltx", fd)
        if sys.platform.startswith("linux"):
            assert all(resident_pages(fd, 300 * PAGE_SIZE))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pages)


@pytest.mark.skipif(not apply.can_drop_behind(), reason="drop-behind needs Linux sync_file_range")
@pytest.mark.usefixtures("small_ranges")
def test_a_failed_writeback_fails_the_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = apply._sync_file_range
    assert real is not None

    def failing(fd: int, offset: int, length: int, flags: int) -> int:
        if flags & apply.SYNC_FILE_RANGE_WAIT_AFTER:
            ctypes.set_errno(errno.EIO)
            return -1
        return real(fd, offset, length, flags)

    monkeypatch.setattr(apply, "_sync_file_range", failing)
    fd = os.open(tmp_path / "db", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as info:
            verify_snapshot_into(io.BytesIO(snapshot_bytes(seeded_pages(BATCH_PAGES * (apply.WRITEBACK_RANGES + 4)))),
                                 "snap.ltx", fd)
        assert info.value.errno == errno.EIO
    finally:
        os.close(fd)
