"""A volume's blocks on each real store backend (file:// and the SeaweedFS S3 server)."""

from __future__ import annotations

import random
import re
import urllib.parse
import uuid
from pathlib import Path

from blockmap.volume import Volume
from tests.blockmap.conftest import TEST_BLOCK_SIZE, meta_conn
from tests.blockmap.juicefs_cli import gc_report, run_juicefs, sync_out
from tests.blockmap.metacheck import metadata_problems
from tests.s3server import S3Server


def _sibling(url: str, suffix: str) -> str:
    """`url` with `suffix` added to its path (its query, e.g. an S3 endpoint, kept)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def test_volume_round_trip_on_each_store(tmp_path: Path, store_url: str) -> None:
    # Metadata and blocks both in the store: blockmap.db in an ltxvfs replica beside the data.
    meta = _sibling(store_url, "-meta")
    r = random.Random(21)
    files = {f"/d/f{i}": r.randbytes(r.randrange(0, 3 * TEST_BLOCK_SIZE)) for i in range(6)}
    with Volume.format(meta, store_url, "storevol", block_size=TEST_BLOCK_SIZE) as v:
        v.mkdir("/d")
        for p, data in files.items():
            v.write_file(p, data)
        v.pwrite("/d/f0", b"patched", 3)
        files["/d/f0"] = (files["/d/f0"] + bytes(10))[:3] + b"patched" + files["/d/f0"][10:]
        v.clone("/d", "/e")
        v.unlink("/d/f1")
        del files["/d/f1"]
    with Volume.open(meta) as v:  # the data URL comes back from the metadata
        assert v.data_url == store_url
        for p, data in files.items():
            assert v.read_file(p) == data
            assert v.read_file(p.replace("/d/", "/e/")) == v.read_file(p.replace("/d/", "/e/"))
        assert v.fsck().ok
        assert v.gc(skip_age=0).leaked == []
        # Objects live under <name>/ in the store, as JuiceFS lays them out.
        keys = [o.key for o in v.store.list("")]
        assert keys and all(k.startswith("storevol/") for k in keys)
        assert "storevol/juicefs_uuid" in keys
        assert metadata_problems(meta_conn(v)) == []
        assert v.meta_stats()["gets"] > 0  # the metadata was read from the store


def test_binary_reads_a_volume_on_s3(tmp_path: Path, s3_server: S3Server) -> None:
    # The binary reads a bucket's root only (it drops a path after the bucket), so this volume
    # lives at the bucket root under a name of its own: <name>/chunks/...
    s3_url = s3_server.url("")
    name = f"s3vol-{uuid.uuid4().hex[:12]}"
    meta = f"sqlite3://{tmp_path}/meta.db"
    data = random.Random(22).randbytes(2 * TEST_BLOCK_SIZE + 5)
    with Volume.format(meta, s3_url, name, block_size=TEST_BLOCK_SIZE) as v:
        v.write_file("/f", data)
        bucket = v.settings.bucket
    endpoint = urllib.parse.parse_qs(urllib.parse.urlsplit(s3_url).query)["endpoint"][0]
    assert bucket.startswith(endpoint.rstrip("/") + "/")
    env = s3_server.env()
    env.update(ACCESS_KEY=s3_server.access_key, SECRET_KEY=s3_server.secret_key)
    proc = run_juicefs("fsck", meta, "--path", "/", "--recursive", "--sync-dir-stat", env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b0 leaked\b", gc_report(meta, env=env))
    out = tmp_path / "out"
    out.mkdir()
    sync_out(meta, out, env=env)
    assert (out / "f").read_bytes() == data
