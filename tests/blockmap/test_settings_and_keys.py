"""Volume settings JSON, data URL mapping, block keys, ID batches."""

from __future__ import annotations

import json

import pytest

from blockmap.blocks import block_key, block_sizes
from blockmap.counters import INODE_BATCH, SLICE_ID_BATCH, IdAllocator
from blockmap.errors import VolumeFormatError
from blockmap.settings import VolumeSettings, data_url_for_storage, storage_for_data_url


def test_unknown_keys_survive_a_round_trip() -> None:
    raw = {
        "Name": "vol1", "UUID": "u", "Storage": "file", "Tiers": {"0": {"ID": 0, "StorageClass": "", "Tag": ""}},
        "Bucket": "/b/", "BlockSize": 4096, "Compression": "none", "TrashDays": 1, "MetaVersion": 1,
        "UploadLimit": 10, "SomethingNew": [1, 2], "EnableACL": False,
    }  # fmt: skip
    s = VolumeSettings.decode(json.dumps(raw))
    out = json.loads(s.encode())
    assert out == raw
    assert list(out)[:6] == ["Name", "UUID", "Storage", "Tiers", "Bucket", "BlockSize"]
    assert s.encode().startswith('{\n"Name": "vol1",\n"UUID": "u",\n')


def test_unsupported_volumes_are_refused() -> None:
    base = {"Name": "vol1", "UUID": "u", "Storage": "file", "Bucket": "/b/", "BlockSize": 4096}
    for extra, reason in (
        ({"Compression": "lz4"}, "compression"),
        ({"EncryptKey": "PEM"}, "encrypted"),
        ({"Shards": 4}, "sharded"),
        ({"MetaVersion": 2}, "metadata version"),
        ({"BlockSize": 100}, "power of two"),
    ):
        with pytest.raises(VolumeFormatError, match=reason):
            VolumeSettings.decode(json.dumps({**base, **extra})).validate()
    with pytest.raises(VolumeFormatError, match="JSON"):
        VolumeSettings.decode("{not json")


def test_data_urls_map_to_juicefs_storage_and_back() -> None:
    assert storage_for_data_url("file:///srv/data") == ("file", "/srv/data/")
    assert storage_for_data_url("/srv/data/") == ("file", "/srv/data/")
    assert data_url_for_storage("file", "/srv/data/") == "file:///srv/data"
    assert storage_for_data_url("file:///srv/deep/data") == ("file", "/srv/deep/data/")
    storage, bucket = storage_for_data_url("s3://bkt?endpoint=127.0.0.1:8333&region=us-east-1")
    assert (storage, bucket) == ("s3", "http://127.0.0.1:8333/bkt")
    assert storage_for_data_url("s3://bkt/?endpoint=http://h:1") == ("s3", "http://h:1/bkt")
    back = data_url_for_storage(storage, bucket)
    assert back == "s3://bkt?endpoint=http://127.0.0.1:8333&force-path-style=true"
    # ... and reads a bucket it was given with a path at the bucket's root, as the binary does.
    assert data_url_for_storage("s3", "http://h:1/bkt/sub/") == "s3://bkt?endpoint=http://h:1&force-path-style=true"
    # The binary drops a path after an S3 bucket: such a URL is refused, naming the URL once.
    with pytest.raises(VolumeFormatError, match=r"^s3://bkt/pre/fix\?endpoint=h:1: an S3 data URL names the bucket"):
        storage_for_data_url("s3://bkt/pre/fix?endpoint=h:1")
    with pytest.raises(ValueError):
        storage_for_data_url("gs://x")
    with pytest.raises(VolumeFormatError):
        data_url_for_storage("oss", "https://x")


def test_block_keys_are_juicefs_keys() -> None:
    assert block_key("v", 1234567, 2, 4 << 20) == f"v/chunks/1/1234/1234567_2_{4 << 20}"
    assert block_key("v", 1234567, 0, 99, hash_prefix=True) == "v/chunks/87/1/1234567_0_99"
    assert block_sizes(10, 4) == [4, 4, 2]
    assert block_sizes(8, 4) == [4, 4]
    assert block_sizes(0, 4) == []


def test_ids_are_reserved_in_juicefs_batches() -> None:
    counters = {"nextInode": 2, "nextChunk": 1}
    calls: list[tuple[str, int]] = []

    def reserve(name: str, batch: int) -> int:
        calls.append((name, batch))
        counters[name] += batch
        return counters[name]

    ids = IdAllocator(reserve)
    inodes = [ids.next_inode() for _ in range(INODE_BATCH + 1)]
    assert inodes[:3] == [2, 3, 4] and inodes[-1] == INODE_BATCH + 2
    assert len(set(inodes)) == len(inodes)
    slices = [ids.next_slice_id() for _ in range(3)]
    assert slices == [1, 2, 3]
    assert calls == [("nextInode", INODE_BATCH), ("nextInode", INODE_BATCH), ("nextChunk", SLICE_ID_BATCH)]
