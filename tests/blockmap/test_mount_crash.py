"""SIGKILL `blockmap mount` at random moments while a program writes through it: after each
remount, every file whose fsync returned holds exactly the bytes acknowledged last, no metadata
names a missing block, and fsck is clean at the end."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blockmap.volume import Volume
from tests.blockmap.mounting import blockmap, cleanup, force_unmount, mount, require_fuse
from tests.conftest import unique_prefix
from tests.s3server import S3Server

#: Kills in the default suite (the issue's crash matrix), and on S3 (each remount is slower).
RUNS = 20
S3_RUNS = 10
#: Bound on waiting for the writer to acknowledge enough writes before a kill.
ACK_DEADLINE = 60.0

#: The writer: fsync'd overwrites of a few names, non-durable renames and unlinks between them;
#: a journal outside the mount (fsync'd) records each write before it starts (B) and once its
#: fsync returned (D).
WRITER = r"""
import hashlib, os, random, sys
mnt, journal, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
jfd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
n = 0
while True:
    name = f"f{rng.randrange(12)}"
    data = rng.randbytes(rng.choice([0, 1, 777, 65536, 65537, 200000]))
    path = os.path.join(mnt, name)
    digest = hashlib.sha256(data).hexdigest()
    os.write(jfd, f"B {name} {digest}\n".encode())  # about to overwrite: either version may survive
    os.fsync(jfd)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.write(jfd, f"D {name} {digest}\n".encode())  # acknowledged: fsync returned
    os.fsync(jfd)
    n += 1
    if n % 3 == 0:  # not fsync'd: may or may not survive, and must not break anything
        tmp = os.path.join(mnt, f"t{n}")
        with open(tmp, "wb") as f:
            f.write(rng.randbytes(5000))
        os.rename(tmp, os.path.join(mnt, f"r{n % 5}"))
        if n % 2:
            try:
                os.unlink(os.path.join(mnt, f"r{(n + 1) % 5}"))
            except FileNotFoundError:
                pass
"""


@pytest.fixture(autouse=True)
def fuse() -> None:
    require_fuse()


EMPTY = hashlib.sha256(b"").hexdigest()


#: Stands for "no such file" among the allowed contents (a first write that was under way).
ABSENT = "absent"


def digest_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ABSENT


def allowed(journal: Path) -> dict[str, set[str]]:
    """name -> the contents it may hold after a kill: the last acknowledged, or, when an overwrite
    was under way, that new version or the truncated (empty) file it starts from."""
    out: dict[str, set[str]] = {}
    for kind, name, digest in _entries(journal):
        if kind == "D":
            out[name] = {digest}
        else:
            out.setdefault(name, {ABSENT}).update({digest, EMPTY})
    return out


def _entries(journal: Path) -> list[tuple[str, str, str]]:
    if not journal.exists():
        return []
    out = []
    for line in journal.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("B", "D") and len(parts[2]) == 64:
            out.append((parts[0], parts[1], parts[2]))
    return out


def acks(journal: Path) -> int:
    return sum(1 for kind, _, _ in _entries(journal) if kind == "D")


def test_sigkill_at_random_moments_loses_no_fsynced_write(tmp_path: Path) -> None:
    meta, data = f"file://{tmp_path}/meta", f"file://{tmp_path}/data"
    blockmap("format", "--meta", meta, "--data", data, "--block-size", "64K", "crashvol")
    crash_matrix(tmp_path, meta, RUNS, seed=20261207)


def test_sigkill_on_s3_with_blocks_written_back_loses_no_fsynced_write(
        tmp_path: Path, s3_server: S3Server, request: pytest.FixtureRequest) -> None:
    # On S3 the mount writes blocks back (uploaded after close, before the metadata that names
    # them ships): a kill drops staged blocks and the unshipped commits together.
    prefix = unique_prefix(request)
    meta = s3_server.url(f"{prefix}-meta")
    env = s3_server.env()
    blockmap("format", "--meta", meta, "--data", s3_server.url(""), "--block-size", "64K", f"crash{prefix[-8:]}",
             env=env)
    crash_matrix(tmp_path, meta, S3_RUNS, seed=20261208, env=env)


def crash_matrix(tmp_path: Path, meta: str, runs: int, seed: int, env: dict[str, str] | None = None) -> None:
    """`runs` kills of the mount while WRITER runs, each followed by a remount that checks every
    acknowledged write; fsck is clean at the end."""
    rng = random.Random(seed)
    journal = tmp_path / "journal"
    mnt = tmp_path / "mnt"
    for run in range(runs + 1):
        # Half the remounts reuse the cache dir the killed mount left (hydrated copy, blocks).
        cache = tmp_path / ("cache" if run % 2 else f"cache{run}")
        m = mount(meta, mnt, cache, env=env)
        try:
            for name, digests in allowed(journal).items():  # everything acknowledged before the last kill
                assert digest_of(mnt / name) in digests, f"run {run}: {name} lost its fsync'd contents"
            if run == runs:
                break
            before = acks(journal)
            target = before + rng.randrange(1, 12)
            writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mnt), str(journal), str(run)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + ACK_DEADLINE
            while acks(journal) < target:  # the kill lands at a moment the journal picks
                assert writer.poll() is None, f"run {run}: the writer stopped early"
                assert time.monotonic() < deadline, f"run {run}: the writer acknowledged nothing"
                time.sleep(0.002)
            m.kill(signal.SIGKILL)
            writer.kill()
            writer.wait(timeout=60)
        finally:
            if run < runs:
                cleanup(m)
                force_unmount(mnt)
    blockmap("umount", str(mnt), env=env)
    with Volume.open(meta, read_only=True) as vol:
        report = vol.fsck()
        assert report.ok, report
        assert not report.missing_blocks
        for name, digests in allowed(journal).items():
            got = hashlib.sha256(vol.read_file("/" + name)).hexdigest() if vol.exists("/" + name) else ABSENT
            assert got in digests
    assert acks(journal) >= runs  # every run acknowledged writes before its kill
    os.sync()
