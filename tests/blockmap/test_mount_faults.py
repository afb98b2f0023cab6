"""`blockmap mount` on S3 (the real SeaweedFS) through the fault-injecting proxy: transient faults
are retried unseen; an outage fails operations with EIO and a log line; nothing an fsync
acknowledged is lost; the mount is usable again once the store recovers."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import pytest

from blockmap.volume import Volume
from tests.blockmap.mounting import blockmap, fsynced_write, mounted, require_fuse
from tests.conftest import unique_prefix
from tests.s3proxy import Fault, FaultSchedule, S3Proxy
from tests.s3server import S3Server

BLOCK = 64 << 10


@pytest.fixture(autouse=True)
def fuse() -> None:
    require_fuse()



def test_mount_rides_out_faults_and_an_outage(tmp_path: Path, s3_server: S3Server,
                                               request: pytest.FixtureRequest) -> None:
    prefix = unique_prefix(request)
    name = f"faults{prefix[-8:]}"
    env = s3_server.env()
    direct_meta = s3_server.url(f"{prefix}-meta")
    blockmap("format", "--meta", direct_meta, "--data", s3_server.url(""), "--block-size", "64K", name, env=env)
    rng = random.Random(9)
    durable: dict[str, bytes] = {}
    with S3Proxy(s3_server.endpoint, schedule=FaultSchedule(seed=3, rate=0.3, max_in_a_row=2)) as proxy:
        meta = direct_meta.replace(s3_server.endpoint, proxy.url)
        data = s3_server.url("").replace(s3_server.endpoint, proxy.url)  # the blocks go through it too
        with mounted(meta, tmp_path / "mnt", tmp_path / "cache", "--data", data, env=env) as m:
            # Transient faults (resets, 5xx, cut answers, stalls): every operation gets through.
            (m.mountpoint / "dir").mkdir()
            for i in range(6):
                data = rng.randbytes(rng.randrange(1, 3 * BLOCK))
                fsynced_write(m.mountpoint / "dir" / f"f{i}", data)
                durable[f"dir/f{i}"] = data
            for rel, data in durable.items():
                assert (m.mountpoint / rel).read_bytes() == data
            assert sum(proxy.fault_counts().values()) > 0, "no fault was injected"
            fsynced_write(m.mountpoint / "written-back", b"")  # created (and shipped) before the outage
            # An outage: every request answers 503 SlowDown. Writes that must reach the store fail.
            proxy.schedule = FaultSchedule(seed=4, rate=1.0, faults=[Fault.status(503, "SlowDown")],
                                           max_in_a_row=None)
            # Written back: a small file's close does not wait for its block's upload, so it
            # succeeds; the bytes read back from the buffer, and reach the store (before the
            # commit naming them) once it is back. (A full block's upload is waited for.)
            pending = rng.randbytes(BLOCK - 5)
            with open(m.mountpoint / "written-back", "r+b") as f:
                f.write(pending)
            assert (m.mountpoint / "written-back").read_bytes() == pending
            durable["written-back"] = pending
            with pytest.raises(OSError) as err:
                fsynced_write(m.mountpoint / "during-outage", rng.randbytes(2 * BLOCK))
            assert err.value.errno == errno.EIO
            assert "failed" in m.log_text()
            # The store recovers: the mount goes on, and what was acknowledged is there.
            proxy.schedule = None
            fsynced_write(m.mountpoint / "after", b"back")
            assert (m.mountpoint / "after").read_bytes() == b"back"
            for rel, data in durable.items():
                assert (m.mountpoint / rel).read_bytes() == data
    with Volume.open(direct_meta, read_only=True) as vol:
        for rel, data in durable.items():
            assert vol.read_file("/" + rel) == data
        assert vol.read_file("/after") == b"back"
        assert vol.fsck().ok
