"""A volume's blocks on each real store backend (file:// and the SeaweedFS S3 server)."""

from __future__ import annotations

import random
import re
import urllib.parse
import uuid
from pathlib import Path

import pytest

from blockmap.errors import VolumeFormatError
from blockmap.volume import Volume
from tests.blockmap.conftest import TEST_BLOCK_SIZE, meta_conn
from tests.blockmap.juicefs_cli import gc_report, run_juicefs, sync_out
from tests.blockmap.metacheck import metadata_problems
from tests.s3server import S3Server


def _sibling(url: str, suffix: str) -> str:
    """`url` with `suffix` added to its path (its query, e.g. an S3 endpoint, kept)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def _bucket_root(url: str) -> str:
    """An S3 URL's bucket without its path (the only S3 data URL the juicefs binary reads)."""
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path=""))


def test_volume_round_trip_on_each_store(tmp_path: Path, store_url: str) -> None:
    # Metadata and blocks both in the store: blockmap.db in an ltxvfs replica beside the data
    # (on S3 the data URL is the bucket, and the volume's unique name keeps it apart).
    meta = _sibling(store_url, "-meta")
    on_s3 = store_url.startswith("s3://")
    data_url = _bucket_root(store_url) if on_s3 else store_url
    name = f"storevol-{uuid.uuid4().hex[:8]}" if on_s3 else "storevol"
    r = random.Random(21)
    files = {f"/d/f{i}": r.randbytes(r.randrange(0, 3 * TEST_BLOCK_SIZE)) for i in range(6)}
    with Volume.format(meta, data_url, name, block_size=TEST_BLOCK_SIZE) as v:
        v.mkdir("/d")
        for p, data in files.items():
            v.write_file(p, data)
        v.pwrite("/d/f0", b"patched", 3)
        files["/d/f0"] = (files["/d/f0"] + bytes(10))[:3] + b"patched" + files["/d/f0"][10:]
        v.clone("/d", "/e")
        v.unlink("/d/f1")
        del files["/d/f1"]
    with Volume.open(meta) as v:  # the data URL comes back from the metadata
        assert v.data_url == data_url
        for p, data in files.items():
            assert v.read_file(p) == data
            assert v.read_file(p.replace("/d/", "/e/")) == v.read_file(p.replace("/d/", "/e/"))
        assert v.fsck().ok
        assert v.gc(skip_age=0).leaked == []
        # Objects live under <name>/ in the store, as JuiceFS lays them out.
        keys = [o.key for o in v.store.list("" if not on_s3 else name)]
        assert keys and all(k.startswith(f"{name}/") for k in keys)
        assert f"{name}/juicefs_uuid" in keys
        assert any(k.startswith(f"{name}/chunks/") for k in keys)
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


def _binary_env(s3_server: S3Server) -> dict[str, str]:
    env = s3_server.env()
    env.update(ACCESS_KEY=s3_server.access_key, SECRET_KEY=s3_server.secret_key)
    return env


def test_binary_drops_a_path_after_the_s3_bucket_and_blockmap_reads_that_volume(
    tmp_path: Path, s3_server: S3Server
) -> None:
    # The fact behind refusing s3://bucket/path data URLs: juicefs 1.4.2 formatted with
    # --bucket http://host/bucket/sub keeps the volume at bucket/<name>/, not under sub/.
    name = f"jpath-{uuid.uuid4().hex[:10]}"
    sub = f"sub-{uuid.uuid4().hex[:10]}"
    meta = f"sqlite3://{tmp_path}/meta.db"
    env = _binary_env(s3_server)
    run_juicefs("format", meta, "--storage", "s3", "--bucket", f"{s3_server.endpoint}/{s3_server.bucket}/{sub}/",
                "--trash-days", "0", name, env=env)  # fmt: skip
    src = tmp_path / "src"
    src.mkdir()
    data = random.Random(23).randbytes(3 * 1000 + 17)
    (src / "f").write_bytes(data)
    sync_in_env = {**env, "BLOCKMAP_META": meta}
    run_juicefs("sync", "--metrics", "127.0.0.1:0", f"{src}/", "jfs://BLOCKMAP_META/", env=sync_in_env)
    assert [o["Key"] for o in s3_server.objects(sub)] == []
    keys = [o["Key"] for o in s3_server.objects(f"{name}/")]
    assert f"{name}/juicefs_uuid" in keys and any(k.startswith(f"{name}/chunks/") for k in keys)
    # blockmap opens the binary's volume where the binary put it.
    with Volume.open(meta, read_only=True) as v:
        assert v.read_file("/f") == data
        assert v.fsck().ok


def test_format_refuses_an_s3_data_url_with_a_path(tmp_path: Path, s3_server: S3Server, s3_url: str) -> None:
    meta = tmp_path / "meta.db"
    with pytest.raises(VolumeFormatError, match="names the bucket only") as caught:
        Volume.format(f"sqlite3://{meta}", s3_url, "pathvol")
    assert caught.value.what == s3_url
    assert not meta.exists()  # refused before anything was written, metadata or data
    assert [o["Key"] for o in s3_server.objects(urllib.parse.urlsplit(s3_url).path.strip("/"))] == []
    assert [o["Key"] for o in s3_server.objects("pathvol/")] == []


def test_binary_reads_a_volume_whose_file_data_url_has_a_path(tmp_path: Path) -> None:
    # file storage: the binary's bucket is a directory, so a data URL with any path works.
    data_dir = tmp_path / "srv" / "volumes" / "vol-data"
    data_dir.mkdir(parents=True)
    meta = f"sqlite3://{tmp_path}/meta.db"
    data = random.Random(24).randbytes(2 * TEST_BLOCK_SIZE + 3)
    with Volume.format(meta, f"file://{data_dir}", "filevol", block_size=TEST_BLOCK_SIZE) as v:
        v.makedirs("/docs")
        v.write_file("/docs/a", data)
    assert (data_dir / "filevol" / "juicefs_uuid").exists()
    proc = run_juicefs("fsck", meta, "--path", "/", "--recursive", "--sync-dir-stat", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "out"
    out.mkdir()
    sync_out(meta, out)
    assert (out / "docs" / "a").read_bytes() == data
