"""ltx.prefetch: objects read in order from parallel range GETs, as buffered streams or as views."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ltx.prefetch import Prefetcher, StoredObject
from ltx.store.file import FileStore

MIB = 1024 * 1024


def put_objects(root: Path, sizes: list[int], seed: int = 4) -> tuple[FileStore, list[StoredObject], list[bytes]]:
    rng = random.Random(seed)
    store = FileStore(root)
    objects, datas = [], []
    for n, size in enumerate(sizes):
        data = rng.randbytes(size)
        store.put(f"obj-{n:03d}", data)
        objects.append(StoredObject(f"obj-{n:03d}", size))
        datas.append(data)
    return store, objects, datas


@pytest.mark.parametrize("views", [False, True])
def test_every_object_reads_back_whole(views: bool, tmp_path: Path) -> None:
    store, objects, datas = put_objects(tmp_path, [0, 1, 5000, 3 * 65536 + 7, 100])
    with Prefetcher(store, objects, parallelism=2, chunk_size=65536) as prefetcher:
        for (obj, stream), want in zip(prefetcher.streams(views=views), datas, strict=True):
            got = bytearray()
            while piece := stream.read(10_000):
                assert isinstance(piece, memoryview if views else bytes)
                got += piece
            assert bytes(got) == want, obj.key


def test_view_reads_are_slices_of_the_fetched_chunk(tmp_path: Path) -> None:
    store, objects, datas = put_objects(tmp_path, [3 * 65536])
    with Prefetcher(store, objects, parallelism=2, chunk_size=65536) as prefetcher:
        _, stream = next(prefetcher.streams(views=True))
        first, second = stream.read(1000), stream.read(1000)
        assert isinstance(first, memoryview) and isinstance(second, memoryview)
        assert first.obj is second.obj  # both in one fetched chunk, neither copied
        assert len(stream.read()) == 65536 - 2000  # a read ends at its chunk's end
        assert bytes(first) + bytes(second) == datas[0][:2000]


def test_small_objects_are_fetched_ahead_by_bytes_not_by_count(tmp_path: Path) -> None:
    """Eight small objects then a large one, 2 threads of 1 MiB ranges: once the first object is
    taken, the seven others and the large object's first range are all requested (a window of
    `parallelism` chunks would hold two); the bytes requested ahead stay within 2 MiB."""
    store, objects, _ = put_objects(tmp_path, [100] * 8 + [3 * MIB])
    with Prefetcher(store, objects, parallelism=2, chunk_size=MIB) as prefetcher:
        streams = prefetcher.streams()
        _, stream = next(streams)
        assert len(stream.read()) == 100
        ahead = [(key_index, length) for key_index, length, _ in prefetcher._pending]
        assert ahead == [(i, 100) for i in range(1, 8)] + [(8, MIB)]
        for _ in range(7):
            _, stream = next(streams)
            stream.read()
        _, big = next(streams)
        big.read(1)
        assert prefetcher._held <= 2 * MIB  # the large object's ranges: at most the budget ahead
        assert [length for _, length, _ in prefetcher._pending] == [MIB, MIB]
