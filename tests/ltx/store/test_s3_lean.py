"""The lean S3 read path (no botocore) against the real server: it reads what the full store
wrote, byte for byte and listing for listing, maps errors the same way, and hands writes on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ltx.store import open_store
from ltx.store.base import ObjectNotFoundError, ObjectRangeError, StoreAuthError
from ltx.store.s3 import S3Store
from ltx.store.s3_lean import LeanS3Store
from ltx.store.sigv4 import canonical_query, encode_path
from tests.s3server import S3Server


def test_reads_match_the_full_store(s3_url: str) -> None:
    full = open_store(s3_url)
    lean = open_store(s3_url, lean_reads=True)
    assert isinstance(full, S3Store) and isinstance(lean, LeanS3Store)
    blobs = {f"0000/{i:016x}-{i:016x}.ltx": os.urandom(1000 + i) for i in range(1, 6)}
    blobs["odd key/with space+plus.bin"] = b"x" * 10
    for key, data in blobs.items():
        full.put(key, data, timestamp_ms=1_700_000_000_123)
    assert [o.key for o in lean.list("")] == [o.key for o in full.list("")] == sorted(blobs)
    assert [(o.key, o.size) for o in lean.list("0000/", "0000/" + f"{2:016x}")] == \
        [(o.key, o.size) for o in full.list("0000/", "0000/" + f"{2:016x}")]
    key, data = next(iter(blobs.items()))
    assert lean.get(key) == data
    assert lean.get_range(key, 10, 100) == data[10:110]
    assert lean.get_suffix(key, 50) == (data[-50:], len(data))
    assert lean.get_suffix(key, 10**6) == (data, len(data))
    assert lean.head(key).timestamp_ms == full.head(key).timestamp_ms == 1_700_000_000_123
    assert lean.get("odd key/with space+plus.bin") == b"x" * 10
    with pytest.raises(ObjectNotFoundError):
        lean.get("0000/missing.ltx")
    with pytest.raises(ObjectRangeError):
        lean.get_range(key, len(data) - 5, 10)
    lean.put("written-through.bin", b"abc", if_absent=True)
    assert full.get("written-through.bin") == b"abc"
    assert lean.stats.gets >= 6 and lean.stats.lists >= 2 and lean.stats.puts == 1
    lean.close()
    full.close()


def test_listing_pages_follow_continuation_tokens(s3_url: str) -> None:
    full = open_store(s3_url)
    keys = [f"k/{i:05d}" for i in range(1005)]
    for key in keys:
        full.put(key, b"")
    lean = open_store(s3_url, lean_reads=True)
    assert [o.key for o in lean.list("k/")] == keys
    assert lean.stats.lists == 2


def test_refused_credentials(s3_server: S3Server, s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all")
    lean = open_store(s3_url, lean_reads=True)
    with pytest.raises(StoreAuthError) as info:
        lean.get("anything")
    assert "not-the-secret-at-all" not in str(info.value)


def test_no_botocore_on_the_read_path(s3_server: S3Server, s3_url: str) -> None:
    """A reader process lists and reads without importing botocore."""
    open_store(s3_url).put("a.bin", b"hello")
    code = ("import sys; from ltx.store import open_store; s = open_store(sys.argv[1], lean_reads=True); "
            "assert [o.key for o in s.list('')] == ['a.bin']; assert s.get('a.bin') == b'hello'; "
            "print('botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, s3_url], env=s3_server.env(), capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_canonical_forms() -> None:
    assert encode_path("/b/odd key/with space+plus~.bin") == "/b/odd%20key/with%20space%2Bplus~.bin"
    assert canonical_query({"prefix": "a/b c", "list-type": "2"}) == "list-type=2&prefix=a%2Fb%20c"
