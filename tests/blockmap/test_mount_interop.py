"""`blockmap mount` and the real `juicefs` binary read each other's trees: a tree written through
the mount is mounted by `juicefs mount` from the restored metadata, and the reverse."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from blockmap.volume import Volume
from tests.blockmap.juicefs_cli import gc_report, juicefs_path, run_juicefs
from tests.blockmap.mounting import blockmap, force_unmount, mounted, require_fuse
from tests.blockmap.test_mount import BLOCK, JUICEFS_VIRTUAL, make_tree, tree_digest

LTXCTL = Path(sys.executable).with_name("ltxctl")


@pytest.fixture(autouse=True)
def fuse() -> None:
    require_fuse()


def ltxctl(*args: str) -> None:
    proc = subprocess.run([str(LTXCTL), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def juicefs_mount(meta: str, mnt: Path, cache: Path, *extra: str) -> None:
    mnt.mkdir(exist_ok=True)
    run_juicefs("mount", meta, str(mnt), "-d", "--cache-dir", str(cache), *extra)


def juicefs_umount(mnt: Path) -> None:
    proc = subprocess.run([juicefs_path(), "umount", str(mnt)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        force_unmount(mnt)
        raise AssertionError(proc.stderr)


def test_juicefs_mounts_a_tree_written_through_blockmap_mount(tmp_path: Path) -> None:
    meta, data = f"file://{tmp_path}/meta", f"file://{tmp_path}/data"
    blockmap("format", "--meta", meta, "--data", data, "--block-size", "64K", "bmvol")
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, random.Random(11))
    want = tree_digest(src)
    with mounted(meta, tmp_path / "mnt", tmp_path / "cache") as m:
        subprocess.run(["cp", "-a", f"{src}/.", str(m.mountpoint)], check=True, timeout=300)
        assert tree_digest(m.mountpoint) == want
    ltxctl("restore", meta, "-o", str(tmp_path / "meta.db"))
    local = f"sqlite3://{tmp_path}/meta.db"
    jmnt = tmp_path / "jmnt"
    juicefs_mount(local, jmnt, tmp_path / "jcache", "--read-only")
    try:
        assert tree_digest(jmnt) == want
        diff = subprocess.run(["diff", "-r", "--no-dereference", *[f"--exclude={v}" for v in JUICEFS_VIRTUAL],
                               str(src), str(jmnt)], capture_output=True, text=True, timeout=300)
        assert diff.returncode == 0, diff.stdout
    finally:
        juicefs_umount(jmnt)
    proc = run_juicefs("fsck", local, "--path", "/", "--recursive", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"\b0 leaked\b", gc_report(local))


def test_blockmap_mounts_a_tree_written_through_juicefs_mount(tmp_path: Path) -> None:
    db = tmp_path / "jmeta.db"
    data = tmp_path / "data"
    run_juicefs("format", f"sqlite3://{db}", "jvol", "--storage", "file", "--bucket", f"{data}/",
                "--block-size", str(BLOCK >> 10), "--trash-days", "0")
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src, random.Random(12))
    want = tree_digest(src)
    jmnt = tmp_path / "jmnt"
    juicefs_mount(f"sqlite3://{db}", jmnt, tmp_path / "jcache")
    try:
        subprocess.run(["cp", "-a", f"{src}/.", str(jmnt)], check=True, timeout=300)
    finally:
        juicefs_umount(jmnt)
    replica = f"file://{tmp_path}/replica"
    ltxctl("import", str(db), replica)
    with mounted(replica, tmp_path / "mnt", tmp_path / "cache") as m:
        assert tree_digest(m.mountpoint) == want
        (m.mountpoint / "added-by-blockmap").write_bytes(b"more")
    with Volume.open(replica, read_only=True) as vol:
        assert vol.read_file("/added-by-blockmap") == b"more"
        assert vol.fsck().ok
