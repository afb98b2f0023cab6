"""The mount's block cache beside each real store (blockmap.blocks with blockmap.blockcache): what
goes into the cache directory, and that reads are right either way."""

from __future__ import annotations

import random
from pathlib import Path

from blockmap.blockcache import BlockCache
from blockmap.blocks import BlockStore
from ltx.store.url import open_store
from tests.blockmap.conftest import TEST_BLOCK_SIZE


def cached_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_the_cache_dir_copies_blocks_only_of_a_remote_store(store_url: str, tmp_path: Path) -> None:
    """A small file's partial block and a block fetched for a read go into the cache directory of
    an S3 store; a file:// store's blocks are local files already, so nothing is copied (each
    small file was written twice on local disk, a big file's read-back written again)."""
    store = open_store(store_url)
    rng = random.Random(3)
    partial, full = rng.randbytes(1000), rng.randbytes(TEST_BLOCK_SIZE)
    remote = not store_url.startswith("file:")
    writer = BlockStore(store, "vol", TEST_BLOCK_SIZE, cache=BlockCache(disk_dir=tmp_path / "w"))
    writer.put_block(7, 0, full)
    writer.put_block(8, 0, partial)
    writer.close()  # the copies are written in the background: wait for them
    assert len(cached_files(tmp_path / "w")) == (1 if remote else 0), "only the partial block, and only of S3"
    reader = BlockStore(store, "vol", TEST_BLOCK_SIZE, cache=BlockCache(disk_dir=tmp_path / "r"))
    assert reader.read(7, len(full), 100, 5000) == full[100:5100]
    assert reader.read(8, len(partial), 0, len(partial)) == partial
    reader.close()
    assert len(cached_files(tmp_path / "r")) == (2 if remote else 0), "a fetched block is kept on disk for S3"
    again = BlockStore(store, "vol", TEST_BLOCK_SIZE, cache=BlockCache(disk_dir=tmp_path / "r"))
    assert again.read(7, len(full), 0, len(full)) == full  # from the cache dir (S3) or the store
    again.close()
    store.close()
