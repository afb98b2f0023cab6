"""The lean S3 store's PUT (the writer's commits) against the real server, through the fault proxy
where it matters: same objects and metadata as the full store, create-if-absent, a lost answer
recognised as its own success, another writer's object never taken for it, retries."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from ltx.store import open_store, s3_lean
from ltx.store.base import ObjectExistsError, ObjectNotFoundError
from ltx.store.retry import RetryPolicy
from ltx.store.s3_lean import LeanS3Store
from tests.s3proxy import Fault, S3Proxy
from tests.s3server import S3Server

FAST_RETRIES = RetryPolicy(max_retries=3, backoff_base_s=0.01)


def _lean(url: str) -> LeanS3Store:
    store = open_store(url, lean_reads=True)
    assert isinstance(store, LeanS3Store)
    store._policy = FAST_RETRIES
    return store


def test_put_matches_the_full_store(s3_url: str) -> None:
    lean, full = _lean(s3_url), open_store(s3_url)
    lean.put("0000/a.ltx", b"hello", if_absent=True, timestamp_ms=1_700_000_000_456)
    assert full.get("0000/a.ltx") == b"hello"
    assert full.head("0000/a.ltx").timestamp_ms == 1_700_000_000_456
    with pytest.raises(ObjectExistsError):
        lean.put("0000/a.ltx", b"other", if_absent=True)
    assert full.get("0000/a.ltx") == b"hello", "a taken key is never overwritten"
    lean.put("0000/a.ltx", b"replaced")  # without if_absent: an ordinary PUT
    assert full.get("0000/a.ltx") == b"replaced"
    lean.put("odd key/with space+plus.bin", bytearray(b"x" * 10), if_absent=True)
    assert full.get("odd key/with space+plus.bin") == b"x" * 10
    assert lean.stats.puts == 4 and lean.stats.bytes_written == 5 + 5 + 8 + 10
    lean.close()
    full.close()


def test_large_objects_go_through_the_full_store(s3_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_lean, "LEAN_PUT_MAX_BYTES", 100)
    lean = _lean(s3_url)
    lean.put("big.bin", b"y" * 1000, if_absent=True, timestamp_ms=7)
    with pytest.raises(ObjectExistsError):
        lean.put("big.bin", b"z" * 1000, if_absent=True)
    assert open_store(s3_url).get("big.bin") == b"y" * 1000
    assert lean._full is not None, "the full store took it"
    lean.close()


def test_a_lost_answer_is_recognised_as_our_own_create(s3_server: S3Server, s3_url: str) -> None:
    drops = {"left": 1}

    def plan(method: str, path: str, index: int) -> Fault:
        if method == "PUT" and drops["left"]:
            drops["left"] -= 1
            return Fault.drop_after_forward()
        return Fault.forward()

    with S3Proxy(s3_server.endpoint, plan) as proxy:
        lean = _lean(s3_url.replace(s3_server.endpoint, proxy.url))
        lean.put("0000/b.ltx", b"mine", if_absent=True, timestamp_ms=1)
        assert drops["left"] == 0 and lean.stats.retries >= 1 and lean.stats.heads == 1
        lean.close()
    assert open_store(s3_url).get("0000/b.ltx") == b"mine"


def test_another_writers_object_is_a_conflict_even_after_a_retry(s3_server: S3Server, s3_url: str) -> None:
    open_store(s3_url).put("0000/c.ltx", b"theirs", if_absent=True)
    fails = {"left": 1}

    def plan(method: str, path: str, index: int) -> Fault:
        if method == "PUT" and fails["left"]:
            fails["left"] -= 1
            return Fault.status(503, "SlowDown")
        return Fault.forward()

    with S3Proxy(s3_server.endpoint, plan) as proxy:
        lean = _lean(s3_url.replace(s3_server.endpoint, proxy.url))
        with pytest.raises(ObjectExistsError):
            lean.put("0000/c.ltx", b"mine", if_absent=True)
        assert lean.stats.retries == 1
        lean.close()
    assert open_store(s3_url).get("0000/c.ltx") == b"theirs"


def test_a_small_put_needs_no_botocore(s3_server: S3Server, s3_url: str) -> None:
    code = ("import sys; from ltx.store import open_store; s = open_store(sys.argv[1], lean_reads=True); "
            "s.put('d.bin', b'x', if_absent=True, timestamp_ms=5); print('botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, s3_url], env=s3_server.env(), capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
    assert open_store(s3_url).head("d.bin").timestamp_ms == 5


@pytest.mark.parametrize("sent", [0, 10, 3000])
def test_a_body_cut_short_is_never_stored(s3_url: str, sent: int) -> None:
    """A writer killed while sending a PUT: the server gets the headers and part of the body, then
    the connection closes. The checksums the lean PUT sends make the server store nothing (with an
    unsigned payload SeaweedFS keeps the short body as the object)."""
    lean = _lean(s3_url)
    body = bytes(range(256)) * 24
    path, extra, signed, _ = lean._put_request("0000/cut.ltx", body, if_absent=True, timestamp_ms=1)
    headers = {**lean._signer.headers("PUT", lean._host, path, "", signed=signed), **extra,
               "content-length": str(len(body))}
    host, port = lean._host.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + body[:sent])
        sock.shutdown(socket.SHUT_WR)
        sock.recv(4096)  # the server's answer (an error) or the close: it has finished with it
    with pytest.raises(ObjectNotFoundError):
        lean.head("0000/cut.ltx")
    lean.put("0000/cut.ltx", body, if_absent=True, timestamp_ms=1)  # the name is still free
    assert lean.get("0000/cut.ltx") == body
    lean.close()
